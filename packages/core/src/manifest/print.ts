import { hex } from '../address.js'
import { Document, Scalar } from '../third-party/yaml.js'
import type { ResolvedManifest } from './resolve.js'

function hexScalar(n: number): Scalar {
  const s = new Scalar(n)
  s.format = 'HEX'
  return s
}

/**
 * The effective machine as YAML: includes merged, defaults filled, every resource pinned to what
 * was allocated, and `pins` (ConfigPinner: what a component chose at build, a PCI slot) merged into
 * each component's properties. Feeding it back to `vmm validate` gives the same machine.
 */
export function printEffective(
  m: ResolvedManifest,
  pins: ReadonlyMap<string, Record<string, unknown>> = new Map(),
): string {
  const { layout, ...machine } = m.machine
  const components: Record<string, unknown> = {}
  for (const c of m.components) {
    const resources: Record<string, unknown> = {}
    for (const [name, w] of c.windows) resources[name] = hexScalar(w.base)
    for (const [name, irq] of c.irqs) resources[name] = irq
    components[c.id] = {
      type: c.type.name,
      ...c.config,
      ...pins.get(c.id),
      ...(Object.keys(resources).length ? { resources } : {}),
    }
  }
  const plugins = m.source.plugins.map((p) => p.name)
  const doc = new Document({
    ...(plugins.length ? { plugins } : {}),
    machine: {
      ...machine,
      layout: {
        mmio: { base: hexScalar(layout.mmio.base), size: hexScalar(layout.mmio.size) },
        pio: { base: hexScalar(layout.pio.base), size: hexScalar(layout.pio.size) },
        irqs: layout.irqs,
      },
    },
    components,
  })
  return doc.toString({ lineWidth: 0 })
}

/** The component graph: nodes with their resources, edges for references. */
export function graphText(m: ResolvedManifest): string {
  const lines: string[] = []
  for (const c of m.components) {
    const res = [
      ...[...c.windows].map(([n, w]) => `${n}: ${w.kind} [${hex(w.base)}, ${hex(w.base + w.size)})`),
      ...[...c.irqs].map(([n, irq]) => `${n}: irq ${irq}`),
    ]
    lines.push(`${c.id} (${c.type.name})${res.length ? `  ${res.join(', ')}` : ''}`)
    for (const [prop, targets] of c.references) for (const t of targets) lines.push(`  ${prop} -> ${t}`)
  }
  return `${lines.join('\n')}\n`
}

/** The component graph in Graphviz dot. */
export function graphDot(m: ResolvedManifest): string {
  const q = (s: string) => JSON.stringify(s)
  const lines = ['digraph machine {', '  rankdir=LR;', '  node [shape=box, fontname="sans-serif"];']
  for (const c of m.components) {
    const res = [
      ...[...c.windows].map(([, w]) => `${w.kind} ${hex(w.base)}`),
      ...[...c.irqs].map(([, i]) => `irq ${i}`),
    ]
    lines.push(`  ${q(c.id)} [label=${q([c.id, c.type.name, ...res].join('\n'))}];`)
    for (const [prop, targets] of c.references)
      for (const t of targets) lines.push(`  ${q(c.id)} -> ${q(t)} [label=${q(prop)}];`)
  }
  lines.push('}')
  return `${lines.join('\n')}\n`
}
