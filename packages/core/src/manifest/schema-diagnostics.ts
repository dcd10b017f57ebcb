// ajv's validation errors as diagnostics a person can act on, at the key or value they are about.

import type { ErrorObject } from 'ajv'
import { type Diagnostic, pointer } from './diagnostics.js'
import { didYouMean } from './did-you-mean.js'
import type { ManifestSource } from './source.js'

function describeValue(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return `${typeof v} ${JSON.stringify(v)}`
}

/** Sizes that matched the pattern but are not whole bytes ("1.5"), at their paths under `base`. */
export function badSizes(paths: readonly string[], base: string, source: ManifestSource): Diagnostic[] {
  return paths.map((p) => source.positions.diagnostic(base + p, 'expected a whole number of bytes'))
}

/** ajv errors -> diagnostics a person can act on, at the key or value they are about. */
export function toDiagnostics(
  errors: readonly ErrorObject[],
  base: string,
  source: ManifestSource,
): Diagnostic[] {
  const pos = source.positions
  const out: Diagnostic[] = []
  // anyOf also reports each failed branch at the same place; its own line says it better.
  const anyOfAt = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath))
  for (const e of errors) {
    const path = base + e.instancePath
    if (e.keyword !== 'anyOf' && anyOfAt.has(e.instancePath)) continue
    const p = e.params as Record<string, unknown>
    switch (e.keyword) {
      case 'required':
        out.push(pos.diagnostic(path, `missing required field "${p.missingProperty}"`))
        break
      case 'additionalProperties': {
        const allowed = Object.keys((e.parentSchema?.properties as object | undefined) ?? {})
        out.push(
          pos.diagnostic(
            pointer(path, String(p.additionalProperty)),
            `unknown field "${p.additionalProperty}"${didYouMean(String(p.additionalProperty), allowed)}; expected one of: ${allowed.join(', ')}`,
            true,
          ),
        )
        break
      }
      case 'type':
        out.push(
          pos.diagnostic(
            path,
            `expected ${String(p.type).replace(',', ' or ')}, got ${describeValue(e.data)}`,
          ),
        )
        break
      case 'enum':
        out.push(
          pos.diagnostic(
            path,
            `expected one of: ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
          ),
        )
        break
      case 'const':
        out.push(pos.diagnostic(path, `expected ${JSON.stringify(p.allowedValue)}`))
        break
      case 'pattern':
        // A bad component id also fails `pattern` inside propertyNames; the propertyNames line says it.
        if (!e.schemaPath.includes('/propertyNames/'))
          out.push(pos.diagnostic(path, `expected text matching ${p.pattern}, got ${describeValue(e.data)}`))
        break
      case 'propertyNames':
        out.push(
          pos.diagnostic(
            pointer(path, String(p.propertyName)),
            `invalid id "${p.propertyName}"; expected letters, digits, "_", "." or "-", starting with a letter or "_"`,
            true,
          ),
        )
        break
      case 'anyOf':
        if ((e.parentSchema as Record<string, unknown> | undefined)?.vmmSize === true) {
          out.push(
            pos.diagnostic(
              path,
              `expected a size such as 4096, 0x1000 or "64MiB", got ${JSON.stringify(e.data)}`,
            ),
          )
        } else if (path === '/include')
          out.push(pos.diagnostic(path, 'expected a file path or a list of file paths'))
        else out.push(pos.diagnostic(path, e.message ?? 'is not valid'))
        break
      default:
        out.push(pos.diagnostic(path, `${e.message ?? 'is not valid'}`))
    }
  }
  return out.filter((d, i) => out.findIndex((o) => o.path === d.path && o.message === d.message) === i)
}
