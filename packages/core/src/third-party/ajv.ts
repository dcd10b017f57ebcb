// Core's one way to ajv; see ./README.md (named exports only, as in yaml.ts).
import standalone from 'ajv/dist/standalone/index.js'

export { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'

// Turns a compiled validator into the source of a module, for the validator cache (schema.ts).
// The package is CommonJS: its default import is the function under Node, `.default` elsewhere.
type StandaloneCode = (typeof standalone)['default']
const fn = standalone as unknown as StandaloneCode | { default: StandaloneCode }
export const standaloneCode: StandaloneCode = typeof fn === 'function' ? fn : fn.default
