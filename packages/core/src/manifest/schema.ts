import { resolve } from 'node:path'
import type { ComponentType, JsonSchema } from '../component/component-type.js'
import type { ComponentRegistry } from '../component/registry.js'
import { Ajv, type ErrorObject, type ValidateFunction } from '../vendor/ajv.js'
import { parseSize } from './size.js'

/**
 * A byte size: an integer, or a string such as "64MiB" or "0x1000". Use it in component schemas;
 * the validated config holds the number.
 */
export const sizeSchema: JsonSchema = { vmmSize: true }

/**
 * A file path, relative to the manifest that names it; the validated config holds the absolute path,
 * so components never need to know where their manifest was.
 */
export const pathSchema: JsonSchema = { type: 'string', vmmPath: true }

/** What validators are called with (ajv passContext): where relative paths start. */
export interface ValidationContext {
  readonly baseDir: string
}

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
 * An ajv instance that fills defaults and knows `vmmSize` (size strings become numbers) and `vmmPath`
 * (relative paths become absolute). Schemas are not checked against the JSON Schema meta-schema:
 * compiling the meta-schema costs ~70 ms of every `vmm run`; the built-in schemas are checked by a
 * test instead, and a plugin schema that ajv cannot compile is reported naming the plugin.
 */
export function createAjv(): Ajv {
  const ajv = new Ajv({
    allErrors: true,
    useDefaults: true,
    strict: false,
    verbose: true,
    passContext: true,
    validateSchema: false,
  })
  ajv.addKeyword({
    keyword: 'vmmSize',
    modifying: true,
    errors: true,
    validate: function validateSize(
      _schema: unknown,
      data: unknown,
      _parent: unknown,
      cxt?: { parentData: Record<string | number, unknown>; parentDataProperty: string | number },
    ) {
      const n = parseSize(data)
      if (n === undefined) {
        ;(validateSize as { errors?: Partial<ErrorObject>[] }).errors = [
          {
            keyword: 'vmmSize',
            message: `expected a size such as 4096, 0x1000 or "64MiB", got ${JSON.stringify(data)}`,
            params: {},
          },
        ]
        return false
      }
      if (cxt) cxt.parentData[cxt.parentDataProperty] = n
      return true
    },
  })
  ajv.addKeyword({
    keyword: 'vmmPath',
    modifying: true,
    validate: function (
      this: ValidationContext | undefined,
      _schema: unknown,
      data: unknown,
      _parent: unknown,
      cxt?: { parentData: Record<string | number, unknown>; parentDataProperty: string | number },
    ) {
      if (typeof data === 'string' && cxt)
        cxt.parentData[cxt.parentDataProperty] = resolve(this?.baseDir ?? '.', data)
      return true
    },
  })
  return ajv
}

/** Compiles and caches validators per type, so only the types a manifest uses are compiled. */
export class SchemaCache {
  private readonly ajv = createAjv()
  private readonly nodes = new Map<ComponentType, ValidateFunction>()
  private envelope: ValidateFunction | undefined

  envelopeValidator(): ValidateFunction {
    this.envelope ??= this.ajv.compile(envelopeSchema)
    return this.envelope
  }

  nodeValidator(type: ComponentType): ValidateFunction {
    let v = this.nodes.get(type)
    if (!v) {
      v = this.ajv.compile(nodeSchema(type))
      this.nodes.set(type, v)
    }
    return v
  }
}

/**
 * The whole manifest schema, every registered type included, for editors (`vmm schema`). The
 * `vmmSize` keyword is spelled out as standard JSON Schema here.
 */
export function manifestSchema(registry: ComponentRegistry): JsonSchema {
  const spelled = (s: unknown): unknown => {
    if (Array.isArray(s)) return s.map(spelled)
    if (typeof s !== 'object' || s === null) return s
    if ((s as JsonSchema).vmmPath === true) return { type: 'string' }
    if ((s as JsonSchema).vmmSize === true) {
      return {
        anyOf: [
          { type: 'integer', minimum: 0 },
          {
            type: 'string',
            pattern: '^\\s*(0x[0-9a-fA-F]+|\\d+(\\.\\d+)?)\\s*([KkMmGgTt](i?[Bb])?|[Bb])?\\s*$',
          },
        ],
      }
    }
    return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, spelled(v)]))
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
