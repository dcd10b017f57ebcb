import { dirname } from 'node:path'
import type { ErrorObject } from 'ajv'
import { hex } from '../address.js'
import { type ComponentType, ConfigError, type ResourceRequest } from '../component/component-type.js'
import type { ComponentRegistry } from '../component/registry.js'
import type { Window } from '../component/resources.js'
import type { MemoryHole } from '../memory/flat-memory.js'
import { loadPlugin, PluginError } from '../plugin/loader.js'
import { type Diagnostic, ManifestError, pointer } from './diagnostics.js'
import { envelopeSchema, nodeSchema, normalizeConfig, SchemaCache, type Validator } from './schema.js'
import { formatSize } from './size.js'
import type { ManifestSource } from './source.js'

export interface MachineConfig {
  readonly memory: number
  readonly vcpus: number
  readonly irqchip: boolean
  readonly memoryModel: 'flat' | 'stacked'
  readonly layout: {
    readonly mmio: { readonly base: number; readonly size: number }
    readonly pio: { readonly base: number; readonly size: number }
    readonly irqs: readonly number[]
  }
}

/** A manifest node ready to build: validated, defaults filled, references checked, resources allocated. */
export interface ResolvedComponent {
  readonly id: string
  readonly type: ComponentType
  /** The node's fields without `type` and `resources`. */
  readonly config: Record<string, unknown>
  readonly windows: ReadonlyMap<string, Window>
  readonly irqs: ReadonlyMap<string, number>
  /** Reference property -> the ids it names. */
  readonly references: ReadonlyMap<string, readonly string[]>
}

export interface ResolvedManifest {
  readonly source: ManifestSource
  readonly machine: MachineConfig
  /** Dependencies first: a component comes after everything it references. */
  readonly components: readonly ResolvedComponent[]
  /** The RAM holes the flat memory model leaves for MMIO. */
  readonly holes: readonly MemoryHole[]
}

export interface ResolveOptions {
  /** Reuse compiled validators across manifests. */
  readonly schemas?: SchemaCache
}

/**
 * Turns a manifest into something a Machine can build, or throws a ManifestError listing every
 * problem of the first stage that found any: plugins and schema, then references, then resources.
 * Later stages would only report noise about nodes an earlier stage already rejected.
 */
export async function resolveManifest(
  source: ManifestSource,
  registry: ComponentRegistry,
  options: ResolveOptions = {},
): Promise<ResolvedManifest> {
  const pos = source.positions
  const diags: Diagnostic[] = []
  const fail = () => {
    if (diags.length > 0) throw new ManifestError(diags)
  }

  for (const p of source.plugins) {
    try {
      await loadPlugin(p.name, p.fromFile, registry)
    } catch (e) {
      if (!(e instanceof PluginError)) throw e
      diags.push({ ...p.position, path: '/plugins', message: e.message })
    }
  }

  const schemas = options.schemas ?? new SchemaCache()
  const data = source.data
  const envelope = await schemas.validator(envelopeSchema)
  if (envelope(data))
    diags.push(...badSizes(normalizeConfig(envelopeSchema, data, process.cwd()), '', source))
  else diags.push(...toDiagnostics(envelope.errors ?? [], '', source))
  const nodes = isObject(data.components) ? (data.components as Record<string, Record<string, unknown>>) : {}
  const typed = new Map<string, ComponentType>()
  for (const [id, node] of Object.entries(nodes)) {
    if (!isObject(node) || typeof node.type !== 'string') continue // the envelope reported it
    const path = pointer('/components', id)
    const type = registry.get(node.type)
    if (!type) {
      diags.push(
        pos.diagnostic(
          pointer(path, 'type'),
          `unknown component type "${node.type}"; expected one of: ${registry.names().join(', ')}`,
        ),
      )
      continue
    }
    const schema = nodeSchema(type)
    let validate: Validator
    try {
      validate = await schemas.validator(schema)
    } catch (e) {
      const origin = registry.origin(type.name)
      diags.push(
        pos.diagnostic(
          pointer(path, 'type'),
          `component type "${type.name}" (${origin === 'built-in' ? 'built-in' : `plugin "${origin}"`}) has a schema ajv cannot compile: ${(e as Error).message}`,
        ),
      )
      continue
    }
    if (!validate(node)) {
      diags.push(...toDiagnostics(validate.errors ?? [], path, source))
      continue
    }
    const bad = badSizes(normalizeConfig(schema, node, baseDirOf(source, path)), path, source)
    if (bad.length > 0) diags.push(...bad)
    else typed.set(id, type)
  }
  fail()

  const machine = data.machine as unknown as MachineConfig
  const components = new Map<
    string,
    { id: string; type: ComponentType; node: Record<string, unknown>; refs: Map<string, string[]> }
  >()
  for (const [id, type] of typed) {
    const node = nodes[id]!
    const refs = new Map<string, string[]>()
    for (const spec of type.references ?? []) {
      const value = node[spec.property]
      if (value === undefined) continue
      const targets = Array.isArray(value) ? value.map(String) : [String(value)]
      targets.forEach((target, i) => {
        const path = Array.isArray(value)
          ? pointer(pointer(pointer('/components', id), spec.property), i)
          : pointer(pointer('/components', id), spec.property)
        const t = typed.get(target)
        if (!(target in nodes)) {
          diags.push(
            pos.diagnostic(
              path,
              `"${target}" is not a component; expected one of: ${Object.keys(nodes).join(', ')}`,
            ),
          )
        } else if (t && spec.types && !spec.types.includes(t.name)) {
          diags.push(
            pos.diagnostic(
              path,
              `"${target}" is a ${t.name}; expected a component of type ${spec.types.join(' or ')}`,
            ),
          )
        }
      })
      refs.set(spec.property, targets)
    }
    components.set(id, { id, type, node, refs })
  }
  fail()

  // Depth-first topological sort; a back edge is a reference cycle.
  const order: string[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (id: string, trail: string[]): void => {
    if (state.get(id) === 'done') return
    state.set(id, 'visiting')
    const c = components.get(id)!
    for (const [prop, targets] of c.refs) {
      for (const target of targets) {
        if (state.get(target) === 'visiting') {
          const cycle = [...trail.slice(trail.indexOf(target)), id, target]
          diags.push(
            pos.diagnostic(
              pointer(pointer('/components', id), prop),
              `reference cycle: ${cycle.join(' -> ')}`,
            ),
          )
        } else visit(target, [...trail, id])
      }
    }
    state.set(id, 'done')
    order.push(id)
  }
  for (const id of components.keys()) visit(id, [])
  fail()

  if (machine.vcpus > 1 && !machine.irqchip) {
    // Without the in-kernel LAPIC every vCPU would start at the reset vector together; with it the
    // application processors wait for INIT/SIPI from the bootstrap processor, as on hardware.
    diags.push(pos.diagnostic('/machine/vcpus', `${machine.vcpus} vCPUs need machine.irqchip: true`))
  }
  const holes = memoryHoles(machine)
  const allocated = allocate(
    order.map((id) => components.get(id)!),
    machine,
    holes,
    source,
    diags,
  )
  fail()

  return {
    source,
    machine,
    holes,
    components: order.map((id) => {
      const c = components.get(id)!
      const { type: _t, resources: _r, ...config } = c.node
      const a = allocated.get(id)!
      return { id, type: c.type, config, windows: a.windows, irqs: a.irqs, references: c.refs }
    }),
  }
}

/** RAM that would reach the MMIO allocation window is moved above 4 GiB, leaving the window as a hole. */
function memoryHoles(machine: MachineConfig): MemoryHole[] {
  const { base, size } = machine.layout.mmio
  return machine.memory > base ? [{ base, size: Math.max(size, 2 ** 32 - base) }] : []
}

interface Allocation {
  windows: Map<string, Window>
  irqs: Map<string, number>
}

function allocate(
  components: { id: string; type: ComponentType; node: Record<string, unknown> }[],
  machine: MachineConfig,
  holes: readonly MemoryHole[],
  source: ManifestSource,
  diags: Diagnostic[],
): Map<string, Allocation> {
  const pos = source.positions
  const requests = new Map<string, ResourceRequest[]>()
  for (const c of components) {
    const path = pointer('/components', c.id)
    try {
      const { type: _t, resources: _r, ...config } = c.node
      requests.set(c.id, [...(c.type.resources?.(config) ?? [])])
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e
      diags.push(pos.diagnostic(pointer(path, e.property), e.message))
      requests.set(c.id, [])
    }
  }

  type Placed = { kind: 'pio' | 'mmio'; base: number; size: number; owner: string; path: string }
  const placed: Placed[] = []
  const irqOwners = new Map<number, string>()
  const result = new Map<string, Allocation>()
  const ramEnd = ramLayoutEnd(machine.memory, holes)
  const describe = (w: { kind: string; base: number; size: number }) =>
    `${w.kind} window [${hex(w.base)}, ${hex(w.base + w.size)})`
  const clash = (w: Placed) =>
    placed.find((p) => p.kind === w.kind && p.base < w.base + w.size && w.base < p.base + p.size)
  const overlapsRam = (base: number, size: number) => {
    let guest = 0
    for (const h of holes) {
      if (base < h.base && guest < base + size) return true
      guest = h.base + h.size
    }
    return base + size > guest && base < ramEnd
  }

  // Pinned values first, so the allocator can work around them.
  for (const c of components) {
    const path = pointer('/components', c.id)
    const pins = (c.node.resources ?? {}) as Record<string, number>
    const reqs = requests.get(c.id)!
    const alloc: Allocation = { windows: new Map(), irqs: new Map() }
    result.set(c.id, alloc)
    for (const name of Object.keys(pins)) {
      const r = reqs.find((q) => q.name === name && q.kind !== 'ram')
      if (!r) {
        const names = reqs.filter((q) => q.kind !== 'ram').map((q) => q.name)
        diags.push(
          pos.diagnostic(
            pointer(pointer(path, 'resources'), name),
            `${c.type.name} has no resource "${name}"; expected ${names.length ? `one of: ${names.join(', ')}` : 'no resources'}`,
            true,
          ),
        )
      }
    }
    for (const r of reqs) {
      const pinPath = pointer(pointer(path, 'resources'), r.name)
      if (r.kind === 'ram') {
        if (r.base + r.size > ramEnd || overlapsHole(r.base, r.size, holes)) {
          diags.push(
            pos.diagnostic(
              '/machine/memory',
              `memory is ${formatSize(machine.memory)}, too small for ${c.id} (${c.type.name}), which needs RAM at [${hex(r.base)}, ${hex(r.base + r.size)}); expected at least ${formatSize(r.base + r.size)}`,
            ),
          )
        }
        continue
      }
      const pin = pins[r.name]
      if (pin === undefined) continue
      if (r.kind === 'irq') {
        const owner = irqOwners.get(pin)
        if (!machine.irqchip) continue // reported below, once per request
        if (owner !== undefined) {
          diags.push(
            pos.diagnostic(pinPath, `irq ${pin} is already used by ${owner}; expected a free interrupt line`),
          )
        } else if (pin > 23) {
          diags.push(pos.diagnostic(pinPath, `irq ${pin} does not exist; expected 0 to 23 (IOAPIC inputs)`))
        } else {
          irqOwners.set(pin, `${c.id} (${r.name})`)
          alloc.irqs.set(r.name, pin)
        }
        continue
      }
      const align = r.align ?? 1
      const w: Placed = { kind: r.kind, base: pin, size: r.size, owner: c.id, path: pinPath }
      const other = clash(w)
      if (pin % align !== 0) {
        diags.push(
          pos.diagnostic(pinPath, `${describe(w)} is not aligned; expected a multiple of ${hex(align)}`),
        )
      } else if (r.kind === 'pio' && pin + r.size > 0x10000) {
        diags.push(pos.diagnostic(pinPath, `${describe(w)} runs past port 0xffff`))
      } else if (other) {
        diags.push(
          pos.diagnostic(pinPath, `${describe(w)} of ${c.id} overlaps ${describe(other)} of ${other.owner}`),
        )
      } else if (r.kind === 'mmio' && overlapsRam(pin, r.size)) {
        diags.push(
          pos.diagnostic(
            pinPath,
            `${describe(w)} of ${c.id} overlaps guest RAM; expected an address in a hole or above RAM`,
          ),
        )
      } else {
        placed.push(w)
        alloc.windows.set(r.name, { kind: r.kind, base: pin, size: r.size })
      }
    }
  }

  // Then first fit, in dependency order, for everything not pinned.
  for (const c of components) {
    const path = pointer('/components', c.id)
    const pins = (c.node.resources ?? {}) as Record<string, number>
    const alloc = result.get(c.id)!
    for (const r of requests.get(c.id)!) {
      if (r.kind === 'irq' && !machine.irqchip) {
        diags.push(
          pos.diagnostic(
            path,
            `${c.id} (${c.type.name}) needs an interrupt line (${r.name}); expected machine.irqchip: true`,
          ),
        )
        continue
      }
      if (r.kind === 'ram' || pins[r.name] !== undefined) continue
      if (r.kind === 'irq') {
        const free = machine.layout.irqs.find((n) => !irqOwners.has(n))
        if (free === undefined)
          diags.push(
            pos.diagnostic(
              path,
              `no free interrupt line for ${c.id} (${r.name}); the pool is ${machine.layout.irqs.join(', ')}`,
            ),
          )
        else {
          irqOwners.set(free, `${c.id} (${r.name})`)
          alloc.irqs.set(r.name, free)
        }
        continue
      }
      const pool = machine.layout[r.kind]
      const align = r.align ?? 1
      let base = Math.ceil(pool.base / align) * align
      let found: Placed | undefined
      while (base + r.size <= pool.base + pool.size) {
        const w: Placed = { kind: r.kind, base, size: r.size, owner: c.id, path }
        const other = clash(w)
        if (!other) {
          found = w
          break
        }
        base = Math.ceil((other.base + other.size) / align) * align
      }
      if (!found) {
        diags.push(
          pos.diagnostic(
            path,
            `no room for a ${r.kind} window of ${hex(r.size)} bytes (${r.name}) in [${hex(pool.base)}, ${hex(pool.base + pool.size)})`,
          ),
        )
      } else {
        placed.push(found)
        alloc.windows.set(r.name, { kind: r.kind, base: found.base, size: found.size })
      }
    }
  }
  return result
}

/** The directory of the manifest file that wrote the node at `path` (the working directory for objects). */
function baseDirOf(source: ManifestSource, path: string): string {
  const file = source.positions.at(path).file
  return source.files.includes(file) ? dirname(file) : process.cwd()
}

function ramLayoutEnd(memory: number, holes: readonly MemoryHole[]): number {
  let end = memory
  for (const h of holes) if (h.base < end) end += h.size
  return end
}

function overlapsHole(base: number, size: number, holes: readonly MemoryHole[]): boolean {
  return holes.some((h) => base < h.base + h.size && h.base < base + size)
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function describeValue(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return `${typeof v} ${JSON.stringify(v)}`
}

/** Sizes that matched the pattern but are not whole bytes ("1.5"), at their paths under `base`. */
function badSizes(paths: readonly string[], base: string, source: ManifestSource): Diagnostic[] {
  return paths.map((p) => source.positions.diagnostic(base + p, 'expected a whole number of bytes'))
}

/** ajv errors -> diagnostics a person can act on, at the key or value they are about. */
function toDiagnostics(errors: readonly ErrorObject[], base: string, source: ManifestSource): Diagnostic[] {
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
            `unknown field "${p.additionalProperty}"; expected one of: ${allowed.join(', ')}`,
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
