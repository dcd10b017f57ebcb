// The composition root (as Firecracker's builder.rs): the VM, guest RAM and its memory slots, the
// vCPUs, the DI container with what every component may ask for, and each component built into a
// child container of it and mapped onto its buses. Only this file and the component modules touch
// the DI container (design idea 5).
import '../third-party/reflect-metadata.js'
import { GUEST_ADDRESS_LIMIT, type GuestAddress, guestAddress, hex } from '../address.js'
import { isBusDevice } from '../bus/device.js'
import type { MmioBus } from '../bus/mmio-bus.js'
import type { PioBus } from '../bus/pio-bus.js'
import { ComponentResources } from '../component/resources.js'
import { type MachineControl, referenceToken, Tokens } from '../component/tokens.js'
import type { Hypervisor, MemorySlot, RamMapping, Vcpu, VirtualMachine } from '../hypervisor.js'
import { type InterruptLine, IrqChipLine } from '../irq/interrupt-line.js'
import type { ResolvedComponent, ResolvedManifest } from '../manifest/resolve.js'
import { AddressSpace, MemoryRegion } from '../memory/address-space.js'
import { FlatMemory } from '../memory/flat-memory.js'
import type { SegmentedMemory } from '../memory/guest-memory.js'
import { RamBacking } from '../memory/ram-backing.js'
import { Container } from '../third-party/inversify.js'
import type { Timed } from './drivers.js'
import type { BuiltComponent } from './types.js'

/** What the machine runs on: everything but the components. */
export interface Platform {
  readonly vm: VirtualMachine
  /** A FlatMemory, or with `memoryModel: stacked` the AddressSpace. */
  readonly memory: SegmentedMemory
  /** Set with `memoryModel: stacked`. */
  readonly addressSpace: AddressSpace | undefined
  readonly vcpus: readonly Vcpu[]
  readonly pioBus: PioBus
  readonly mmioBus: MmioBus
  /** The DI container every component's own container descends from. */
  readonly root: Container
  /** The one host mapping all guest RAM comes from (a snapshot's memory file is its bytes). */
  readonly ram: RamMapping
}

/**
 * Creates the VM, maps guest RAM into it (as slots of the flat layout, or as regions of a stacked
 * address space whose every re-flatten updates the slots), the irqchip and the vCPUs, and the root
 * container. `onVm` gets the VM as soon as it exists, so that a caller can dispose it when a later
 * step throws.
 */
export function buildPlatform(
  manifest: ResolvedManifest,
  hypervisor: Hypervisor,
  buses: { readonly pioBus: PioBus; readonly mmioBus: MmioBus },
  onVm: (vm: VirtualMachine) => void,
  /** A snapshot's memory file to map guest RAM from (MAP_PRIVATE), instead of fresh memory. */
  ramFile?: string,
): Platform {
  const { machine, holes } = manifest
  const vm = hypervisor.createVm()
  onVm(vm)
  let mapping: RamMapping
  if (ramFile === undefined) mapping = vm.mapRam(machine.memory)
  else if (vm.mapRamFromFile) mapping = vm.mapRamFromFile(machine.memory, ramFile)
  else throw new Error(`the ${hypervisor.name} hypervisor cannot map guest RAM from a file (${ramFile})`)
  const flat = new FlatMemory(
    new RamBacking(mapping.buffers, mapping.chunkSize, mapping.discard?.bind(mapping)),
    holes,
  )
  let addressSpace: AddressSpace | undefined
  if (machine.memoryModel === 'stacked') {
    // The same RAM layout as regions of a root container; components add theirs (a PCI BAR)
    // through Tokens.AddressSpace, and every re-flatten updates the hypervisor's slots.
    const system = MemoryRegion.container('system', GUEST_ADDRESS_LIMIT)
    for (const seg of flat.memorySegments) {
      system.addSubregion(
        MemoryRegion.ram(`ram@${hex(seg.start)}`, flat.backing, seg.backingOffset, seg.size),
        seg.start,
      )
    }
    addressSpace = new AddressSpace(system, ({ removed, added }) => {
      for (const s of removed) vm.setMemorySlot({ ...slotOf(s, mapping), size: 0 })
      for (const s of added) vm.setMemorySlot(slotOf(s, mapping))
    })
  } else {
    for (const [slot, seg] of flat.memorySegments.entries()) {
      vm.setMemorySlot(slotOf({ ...seg, slot, guestAddress: guestAddress(seg.start) }, mapping))
    }
  }
  const memory = addressSpace ?? flat
  if (machine.irqchip) vm.createIrqchip()
  const vcpus: Vcpu[] = []
  for (let i = 0; i < machine.vcpus; i++) vcpus.push(vm.createVcpu(i))

  // MachineControl is not here: each component gets its own (buildComponent), so the machine
  // knows who reported what.
  const root = new Container({ defaultScope: 'Singleton' })
  root.bind(Tokens.GuestMemory).toConstantValue(memory)
  root.bind(Tokens.PioBus).toConstantValue(buses.pioBus)
  root.bind(Tokens.MmioBus).toConstantValue(buses.mmioBus)
  root.bind(Tokens.VirtualMachine).toConstantValue(vm)
  if (addressSpace) root.bind(Tokens.AddressSpace).toConstantValue(addressSpace)
  return { vm, memory, addressSpace, vcpus, ...buses, root, ram: mapping }
}

export interface BuildInputs {
  /** The instance already built for a referenced id. */
  readonly instance: (id: string) => unknown
  /** The MachineControl of the component being built. */
  readonly control: MachineControl
  readonly timed: Timed
}

/**
 * Builds one resolved component in a child container of the root, which holds the node's config,
 * id, resources, referenced instances and MachineControl, and maps it onto the buses at each of its
 * windows when it is a bus device (a component that is not one maps itself).
 */
export async function buildComponent(
  platform: Platform,
  c: ResolvedComponent,
  { instance: lookup, control, timed }: BuildInputs,
): Promise<BuiltComponent> {
  const { vm } = platform
  const irqs = new Map<string, InterruptLine>()
  for (const [name, irq] of c.irqs) {
    irqs.set(name, new IrqChipLine(irq, (n, level) => vm.setIrqLine(n, level)))
  }
  const resources = new ComponentResources(c.id, c.windows, irqs)
  const child = new Container({ parent: platform.root, defaultScope: 'Singleton' })
  child.bind(Tokens.Config).toConstantValue(c.config)
  child.bind(Tokens.Id).toConstantValue(c.id)
  child.bind(Tokens.Resources).toConstantValue(resources)
  child.bind(Tokens.MachineControl).toConstantValue(control)
  for (const [property, targets] of c.references) {
    const instances = targets.map(lookup)
    child
      .bind(referenceToken(property))
      .toConstantValue(Array.isArray(c.config[property]) ? instances : instances[0])
  }
  const instance = await timed(c.id, 'build', () => {
    child.load(c.type.module)
    return child.get(Tokens.Component)
  })
  const built = { id: c.id, type: c.type.name, instance, resources }
  if (isBusDevice(instance)) {
    for (const [, w] of resources.allWindows()) {
      if (w.kind === 'pio') platform.pioBus.insert(instance, w.base, w.size)
      else platform.mmioBus.insert(instance, w.base, w.size)
    }
  }
  return built
}

/** Takes a component off the buses buildComponent put it on. */
export function unmapComponent(buses: { pioBus: PioBus; mmioBus: MmioBus }, b: BuiltComponent): void {
  if (!isBusDevice(b.instance)) return
  for (const [, w] of b.resources.allWindows())
    (w.kind === 'pio' ? buses.pioBus : buses.mmioBus).remove(w.base)
}

/** A hypervisor memory slot for a piece of guest RAM; all of it comes from the machine's one mapping. */
function slotOf(
  s: { slot: number; guestAddress: GuestAddress; size: number; backingOffset: number; readOnly: boolean },
  mapping: RamMapping,
): MemorySlot {
  return {
    slot: s.slot,
    guestAddress: s.guestAddress,
    size: s.size,
    mapping,
    mappingOffset: s.backingOffset,
    readOnly: s.readOnly,
  }
}
