// Core's one way to yaml; see ./README.md. Named exports only: yaml is CommonJS under Node, and a
// bundle of CommonJS only has the exports it is asked for.
export { Document, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, Scalar } from 'yaml'
