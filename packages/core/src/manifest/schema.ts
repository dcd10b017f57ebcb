import { mkdirSync, renameSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { ComponentType, JsonSchema } from '../component/component-type.js'
import type { ComponentRegistry } from '../component/registry.js'
import type { Ajv, ErrorObject } from '../third-party/ajv.js'
import { parseSize } from './size.js'

/** What parseSize accepts, as a JSON Schema pattern (binary units; "k" and "KiB" are the same). */
const SIZE_PATTERN = '^\\s*(0[xX][0-9a-fA-F]+|\\d+(\\.\\d+)?)\\s*([kKmMgGtT]([iI][bB])?|[bB])?\\s*$'

/**
 * A byte size: an integer, or a string such as "64MiB" or "0x1000". Use it in component schemas;
 * the validated config holds the number. (`vmmSize` is an annotation that normalizeConfig acts on.)
 */
export const sizeSchema: JsonSchema = {
  anyOf: [
    { type: 'integer', minimum: 0 },
    { type: 'string', pattern: SIZE_PATTERN },
  ],
  vmmSize: true,
}

/**
 * A file path, relative to the manifest that names it; the validated config holds the absolute path,
 * so components never need to know where their manifest was.
 */
export const pathSchema: JsonSchema = { type: 'string', vmmPath: true }

/** A guest address or port: an integer (YAML writes hex as 0x...). */
export const addressSchema: JsonSchema = { type: 'integer', minimum: 0, maximum: 2 ** 52 - 1 }

const idPattern = '^[A-Za-z_][A-Za-z0-9_.-]*$'

/** The manifest around the components. */
export const envelopeSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['machine', 'components'],
  properties: {
    $schema: { type: 'string' },
    include: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
    plugins: { type: 'array', items: { type: 'string' } },
    control: {
      type: 'object',
      additionalProperties: false,
      description: 'how the running machine is driven from outside',
      properties: {
        qmp: {
          type: 'string',
          minLength: 1,
          description: 'a Unix socket (relative to the manifest) to serve QMP on, as `vmm run --qmp` does',
        },
      },
    },
    machine: {
      type: 'object',
      additionalProperties: false,
      required: ['memory'],
      properties: {
        memory: sizeSchema,
        vcpus: { type: 'integer', minimum: 1, maximum: 255, default: 1 },
        irqchip: { type: 'boolean', default: false, description: 'in-kernel PIC/IOAPIC and PIT' },
        memoryModel: {
          enum: ['flat', 'stacked'],
          default: 'flat',
          description:
            'flat: RAM with holes; stacked: a region tree components can add to and move regions in (PCI BARs)',
        },
        layout: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'where the allocator places windows and interrupt lines the manifest does not pin',
          properties: {
            mmio: {
              type: 'object',
              additionalProperties: false,
              default: { base: 0xd000_0000, size: 0x2ec0_0000 },
              required: ['base', 'size'],
              properties: { base: addressSchema, size: sizeSchema },
            },
            pio: {
              type: 'object',
              additionalProperties: false,
              default: { base: 0x1000, size: 0xf000 },
              required: ['base', 'size'],
              properties: { base: addressSchema, size: sizeSchema },
            },
            irqs: {
              type: 'array',
              items: { type: 'integer', minimum: 0, maximum: 23 },
              default: [5, 6, 7, 9, 10, 11, 12, 13, 14, 15],
            },
          },
        },
      },
    },
    components: {
      type: 'object',
      propertyNames: { pattern: idPattern },
      additionalProperties: {
        type: 'object',
        required: ['type'],
        properties: { type: { type: 'string' } },
      },
    },
  },
}

/** The schema of one manifest node of `type`: its own fields plus `type` and `resources`. */
export function nodeSchema(type: ComponentType): JsonSchema {
  return {
    type: 'object',
    description: type.description,
    additionalProperties: false,
    required: ['type', ...(type.schema.required ?? [])],
    properties: {
      type: { const: type.name },
      resources: {
        type: 'object',
        description: 'pinned resources by name (window base or IRQ number); the rest are allocated',
        additionalProperties: { type: 'integer', minimum: 0 },
      },
      ...type.schema.properties,
    },
  }
}

/**
 * The ajv options for every manifest validator, including the precompiled ones. Schemas are not
 * checked against the JSON Schema meta-schema at run time (that costs ~70 ms per `vmm run`): the
 * built-in schemas are checked by a test, and a plugin schema ajv cannot compile is reported naming
 * the plugin.
 */
export const ajvOptions = {
  allErrors: true,
  useDefaults: true,
  strict: false,
  verbose: true,
  validateSchema: false,
} as const

/** A compiled validator: ajv's, or the same code precompiled at build time. */
export interface Validator {
  (data: unknown): boolean
  errors?: ErrorObject[] | null
}

/** A short, stable key for a schema, to find its precompiled validator. */
export function schemaKey(schema: JsonSchema): string {
  // FNV-1a over the JSON text: fast, and a collision only costs a wrong precompiled lookup that the
  // full-text comparison below rules out.
  const text = JSON.stringify(schema)
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return `v${(h >>> 0).toString(16)}_${text.length}`
}

/**
 * Where validators compiled at run time (plugin types, changed built-ins) are kept as modules, so
 * the next run imports ajv's generated code instead of loading ajv and compiling: $VMM_CACHE_DIR,
 * else $XDG_CACHE_HOME/vmm, else ~/.cache/vmm. VMM_CACHE_DIR=off turns the cache off. The cache is
 * best effort: a file that cannot be read or written only means compiling with ajv, as without it.
 */
export function validatorCacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.VMM_CACHE_DIR === 'off') return undefined
  if (env.VMM_CACHE_DIR) return resolve(env.VMM_CACHE_DIR, 'validators')
  try {
    return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'vmm', 'validators')
  } catch {
    return undefined // no home directory
  }
}

/** Bumped when the generated module's shape or ajvOptions change, so old cache files are not used. */
const CACHE_FORMAT = 1

/**
 * Validators per schema: precompiled ones (dist/manifest/precompiled.js, generated at build time
 * for the envelope and the built-in types) when the schema is unchanged, then ones cached on disk by
 * an earlier run (validatorCacheDir), else compiled with ajv, which is only loaded then, and written
 * to the cache. Only the types a manifest uses are compiled.
 */
export class SchemaCache {
  private ajv: Ajv | undefined
  private readonly compiled = new Map<string, Validator>()

  constructor(private readonly cacheDir: string | undefined = validatorCacheDir()) {}

  async validator(schema: JsonSchema): Promise<Validator> {
    const key = schemaKey(schema)
    let v = this.compiled.get(key)
    if (v) return v
    const text = JSON.stringify(schema)
    const pre = (await import('./precompiled.js')).validators[key]
    if (pre && pre.source === text) v = pre.validate
    else v = (await this.cached(key, text)) ?? (await this.compile(schema, key, text))
    this.compiled.set(key, v)
    return v
  }

  private file(key: string): string | undefined {
    return this.cacheDir && join(this.cacheDir, `${key}-${CACHE_FORMAT}.mjs`)
  }

  private async cached(key: string, text: string): Promise<Validator | undefined> {
    const file = this.file(key)
    if (file === undefined) return undefined
    try {
      const mod = (await import(pathToFileURL(file).href)) as { source?: string; validate?: Validator }
      return mod.source === text && typeof mod.validate === 'function' ? mod.validate : undefined
    } catch {
      return undefined // not cached yet, or unreadable: compile
    }
  }

  private async compile(schema: JsonSchema, key: string, text: string): Promise<Validator> {
    const { Ajv, standaloneCode } = await import('../third-party/ajv.js')
    this.ajv ??= new Ajv({ ...ajvOptions, code: { source: true, esm: true } })
    const v = this.ajv.compile(schema)
    const file = this.file(key)
    if (file !== undefined) {
      try {
        // ajv's code may require() its runtime helpers (ucs2length, equal, ...): resolve them from
        // core, which depends on ajv.
        const code =
          `import { createRequire } from 'node:module'\n` +
          `const require = createRequire(${JSON.stringify(import.meta.url)})\n` +
          `${standaloneCode(this.ajv, v)}\nexport const source = ${JSON.stringify(text)}\n`
        mkdirSync(this.cacheDir!, { recursive: true })
        const tmp = `${file}.${process.pid}.tmp`
        writeFileSync(tmp, code)
        renameSync(tmp, file) // atomic: a concurrent run sees the old file or the new one
      } catch {} // a read-only or missing cache directory only costs the next run a compile
    }
    return v
  }
}

/**
 * Turns `vmmSize` values into numbers and makes `vmmPath` values absolute, in place, after
 * validation (plain JSON Schema cannot change data, and precompiled validators cannot call back into
 * core). Returns the paths (relative to `data`) of sizes that match the pattern but are not a whole
 * number of bytes, such as "1.5".
 */
export function normalizeConfig(schema: JsonSchema, data: unknown, baseDir: string, path = ''): string[] {
  const bad: string[] = []
  const visit = (
    s: JsonSchema,
    parent: Record<string | number, unknown>,
    key: string | number,
    p: string,
  ) => {
    const value = parent[key]
    if (value === undefined) return
    if (s.vmmSize === true) {
      const n = parseSize(value)
      if (n === undefined) bad.push(p)
      else parent[key] = n
    } else if (s.vmmPath === true && typeof value === 'string') parent[key] = resolve(baseDir, value)
    else bad.push(...normalizeConfig(s, value, baseDir, p))
  }
  if (typeof data !== 'object' || data === null) return bad
  const obj = data as Record<string | number, unknown>
  const props = (schema.properties ?? {}) as Record<string, JsonSchema>
  if (Array.isArray(data)) {
    const items = schema.items as JsonSchema | undefined
    if (items && typeof items === 'object')
      for (let i = 0; i < data.length; i++) visit(items, obj, i, `${path}/${i}`)
    return bad
  }
  const extra = schema.additionalProperties
  for (const k of Object.keys(obj)) {
    const s = props[k] ?? (typeof extra === 'object' ? (extra as JsonSchema) : undefined)
    if (s) visit(s, obj, k, `${path}/${k.replaceAll('~', '~0').replaceAll('/', '~1')}`)
  }
  return bad
}

/**
 * The whole manifest schema, every registered type included, for editors (`vmm schema`), without
 * core's own annotations.
 */
export function manifestSchema(registry: ComponentRegistry): JsonSchema {
  const spelled = (s: unknown): unknown => {
    if (Array.isArray(s)) return s.map(spelled)
    if (typeof s !== 'object' || s === null) return s
    const { vmmSize: _size, vmmPath: _path, ...rest } = s as JsonSchema
    return Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, spelled(v)]))
  }
  const env = spelled(envelopeSchema) as { properties: { components: JsonSchema } }
  const types = registry.all()
  env.properties.components = {
    ...env.properties.components,
    additionalProperties: {
      type: 'object',
      required: ['type'],
      properties: { type: { enum: types.map((t) => t.name) } },
      allOf: types.map((t) => ({
        if: { properties: { type: { const: t.name } } },
        // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keyword, not a thenable
        then: spelled(nodeSchema(t)),
      })),
    },
  }
  return { $schema: 'http://json-schema.org/draft-07/schema#', title: 'vmm machine manifest', ...env }
}
