// Validators for the envelope and the built-in component types, precompiled at build time so a
// manifest that uses only built-ins never loads or runs ajv. The build (scripts/build-dist.mjs)
// replaces the emitted dist/manifest/precompiled.js with the generated code; this source version
// has none, so vitest and an unbundled build compile everything with ajv, with the same result.
import type { Validator } from './schema.js'

/** schemaKey(schema) -> the schema's JSON text (to rule out a key collision) and its validator. */
export const validators: Record<string, { source: string; validate: Validator }> = {}
