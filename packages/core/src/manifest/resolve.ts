// Resolving a manifest: plugins and schema, references and their order, then resources
// (allocate.ts). ajv's errors become diagnostics in schema-diagnostics.ts.
import { dirname, resolve as resolvePath } from 'node:path'
import type { ComponentType } from '../component/component-type.js'
import type { ComponentRegistry } from '../component/registry.js'
import type { Window } from '../component/resources.js'
import type { MemoryHole } from '../memory/flat-memory.js'
import { loadPlugin, PluginError } from '../plugin/loader.js'
import { allocate, memoryHoles } from './allocate.js'
import { type Diagnostic, ManifestError, pointer } from './diagnostics.js'
import { didYouMean } from './did-you-mean.js'
import { envelopeSchema, nodeSchema, normalizeConfig, SchemaCache, type Validator } from './schema.js'
import { badSizes, toDiagnostics } from './schema-diagnostics.js'
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
  /** The manifest's `control` section; `qmp` is absolute (relative paths from the manifest naming it). */
  readonly control: { readonly qmp?: string }
}

export interface ResolveOptions {
  /** Reuse compiled validators across manifests. */
  readonly schemas?: SchemaCache
  /** Files plugins are also resolved from, after the manifest's directory and the working directory. */
  readonly pluginsAlsoFrom?: readonly string[]
  /** A snapshot's manifest, resolved for Machine.restore (ResourceContext.restoring). */
  readonly restoring?: boolean
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
      await loadPlugin(p.name, p.fromFile, registry, options.pluginsAlsoFrom)
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
          `unknown component type "${node.type}"${didYouMean(String(node.type), registry.names())}; expected one of: ${registry.names().join(', ')}`,
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
          // From the target's place on the path to here: for a self-reference (target === id,
          // not on the trail) that is just `id -> id`, never the trail's first node.
          const here = [...trail, id]
          const cycle = [...here.slice(here.indexOf(target)), target]
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

  // KVM_SET_USER_MEMORY_REGION needs page-aligned sizes (Documentation/virt/kvm/api.rst): a size
  // that is not a multiple of 4 KiB would fail only when the VM is built.
  if (machine.memory % 4096 !== 0 || machine.memory === 0) {
    const down = Math.floor(machine.memory / 4096) * 4096
    diags.push(
      pos.diagnostic(
        '/machine/memory',
        `machine.memory must be a non-zero multiple of the 4 KiB page size; ${machine.memory} bytes is not${down > 0 ? ` (${down} would be)` : ''}`,
      ),
    )
  }
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
    { restoring: options.restoring === true },
  )
  fail()

  const control = isObject(data.control) ? data.control : {}
  return {
    source,
    machine,
    holes,
    control:
      typeof control.qmp === 'string'
        ? { qmp: resolvePath(baseDirOf(source, '/control/qmp'), control.qmp) }
        : {},
    components: order.map((id) => {
      const c = components.get(id)!
      const { type: _t, resources: _r, ...config } = c.node
      const a = allocated.get(id)!
      return { id, type: c.type, config, windows: a.windows, irqs: a.irqs, references: c.refs }
    }),
  }
}

/** The directory of the manifest file that wrote the node at `path` (the working directory for objects). */
function baseDirOf(source: ManifestSource, path: string): string {
  const file = source.positions.at(path).file
  return source.files.includes(file) ? dirname(file) : process.cwd()
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
