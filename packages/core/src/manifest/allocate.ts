// Resource allocation, the last stage of resolving a manifest: pinned windows and IRQs are checked
// first, then everything else is placed first-fit in dependency order in the machine's layout.
import { hex } from '../address.js'
import {
  type ComponentType,
  ConfigError,
  type ResourceContext,
  type ResourceRequest,
} from '../component/component-type.js'
import type { Window } from '../component/resources.js'
import type { MemoryHole } from '../memory/flat-memory.js'
import { type Diagnostic, pointer } from './diagnostics.js'
import type { MachineConfig } from './resolve.js'
import { formatSize } from './size.js'
import type { ManifestSource } from './source.js'

/** RAM that would reach the MMIO allocation window is moved above 4 GiB, leaving the window as a hole. */
/**
 * What the in-kernel irqchip and PIT occupy on x86: the i8254 PIT's ports 0x40-0x43, the two i8259
 * PICs' 0x20-0x21 and 0xa0-0xa1, the IOAPIC's page at 0xfec00000 and the local APIC's at 0xfee00000
 * (Intel SDM vol. 3A §11.4.1 "The Local APIC Block Diagram", its default base; the IOAPIC's
 * default base as in the MultiProcessor Specification 1.4 §3.6.2.2).
 */
const PLATFORM_WINDOWS: readonly { kind: 'pio' | 'mmio'; base: number; size: number; owner: string }[] = [
  { kind: 'pio', base: 0x20, size: 2, owner: 'the in-kernel master PIC (i8259)' },
  { kind: 'pio', base: 0x40, size: 4, owner: 'the in-kernel PIT (i8254)' },
  { kind: 'pio', base: 0xa0, size: 2, owner: 'the in-kernel slave PIC (i8259)' },
  { kind: 'mmio', base: 0xfec0_0000, size: 0x1000, owner: 'the in-kernel IOAPIC' },
  { kind: 'mmio', base: 0xfee0_0000, size: 0x1000, owner: 'the local APICs' },
]

/** IRQ 0 is the PIT's timer, IRQ 2 the PICs' cascade (the PIT's IOAPIC input in KVM's routing). */
const PLATFORM_IRQS: readonly [number, string][] = [
  [0, 'the in-kernel PIT (timer)'],
  [2, 'the PIC cascade'],
]

export function memoryHoles(machine: MachineConfig): MemoryHole[] {
  const { base, size } = machine.layout.mmio
  return machine.memory > base ? [{ base, size: Math.max(size, 2 ** 32 - base) }] : []
}

export interface Allocation {
  windows: Map<string, Window>
  irqs: Map<string, number>
}

export function allocate(
  components: { id: string; type: ComponentType; node: Record<string, unknown> }[],
  machine: MachineConfig,
  holes: readonly MemoryHole[],
  source: ManifestSource,
  diags: Diagnostic[],
  context: ResourceContext = { restoring: false },
): Map<string, Allocation> {
  const pos = source.positions
  const requests = new Map<string, ResourceRequest[]>()
  for (const c of components) {
    const path = pointer('/components', c.id)
    try {
      const { type: _t, resources: _r, ...config } = c.node
      requests.set(c.id, [...(c.type.resources?.(config, context) ?? [])])
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
  if (machine.irqchip) {
    // The in-kernel irqchip owns these (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2): a component placed
    // over them would never see its accesses, or would steal the timer's and the cascade's lines.
    for (const w of PLATFORM_WINDOWS) placed.push({ ...w, path: '/machine/irqchip' })
    for (const [line, owner] of PLATFORM_IRQS) irqOwners.set(line, owner)
  }
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

function ramLayoutEnd(memory: number, holes: readonly MemoryHole[]): number {
  let end = memory
  for (const h of holes) if (h.base < end) end += h.size
  return end
}

function overlapsHole(base: number, size: number, holes: readonly MemoryHole[]): boolean {
  return holes.some((h) => base < h.base + h.size && h.base < base + size)
}
