// Core's one way to ajv; see ./README.md (named exports only, as in yaml.ts).
export { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
