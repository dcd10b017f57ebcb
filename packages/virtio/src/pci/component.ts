// virtio devices on PCI as machine components: `virtio-blk-pci`, `virtio-rng-pci`, ... each made
// by `virtioPciType` from the same catalogue entry (../definition.ts) as its virtio-mmio type.
//
// Why a separate `<name>-pci` type rather than a `transport: pci` option on the existing types: a
// PCI device and an MMIO device need different things from the machine (a `bus` reference to a host
// bridge vs. an MMIO window and an IRQ line), and the manifest's schema and resource allocation are
// per type, so one type with a switch would accept `bus` on MMIO and allocate a window for PCI.
// Both types come from one definition, so everything device-specific (its schema properties, its
// `resources` checks such as virtio-blk's image existing, its device factory) is written once.
import {
  type Component,
  type ComponentType,
  ContainerModule,
  describeThrown,
  type GuestMemory,
  guestMessages,
  inject,
  injectable,
  referenceToken,
  SavedState,
  Tokens,
  type VirtualMachine,
} from '@vmm/core'
import { type PciAddress, type PciHostBridgeComponent, pciDeviceProperties } from '@vmm/pci'
import {
  DeviceFactory,
  pciDescription,
  type VirtioDeviceDefinition,
  type VirtioDeviceFactory,
} from '../definition.js'
import type { VirtioDevice } from '../device.js'
import { acceleratorFor } from '../mmio/accelerator.js'
import { type VirtioPciState, VirtioPciTransport } from './transport.js'

/** Options every virtio-pci component has besides its device's own. */
export interface VirtioPciOptions {
  /** The pci-host-bridge component the device sits on. */
  bus: string
  /** Device number on bus 0; the first free one when absent. */
  slot?: number
  /** Use ioeventfd for doorbells where the hypervisor has it (default true); false traps every one. */
  accelerate?: boolean
}

/** A virtio device on the PCI bus `bus` (its host bridge component), at `slot` or the first free one. */
@injectable()
export class VirtioPci implements Component {
  readonly transport: VirtioPciTransport
  readonly address: PciAddress

  constructor(
    @inject(Tokens.Config) private readonly config: VirtioPciOptions & Record<string, unknown>,
    @inject(Tokens.Id) readonly id: string,
    @inject(Tokens.GuestMemory) memory: GuestMemory,
    @inject(Tokens.VirtualMachine) private readonly vm: VirtualMachine,
    @inject(DeviceFactory) factory: VirtioDeviceFactory,
    @inject(referenceToken('bus')) private readonly bridge: PciHostBridgeComponent,
  ) {
    const events = {
      onNeedsReset: (error: unknown) =>
        guestMessages.report(
          `${id}: device needs reset`,
          `${id}: device needs reset: ${describeThrown(error)}`,
        ),
    }
    this.transport = new VirtioPciTransport(factory(config, id), memory, events, id)
    try {
      this.address = bridge.bridge.attach(
        this.transport,
        config.slot === undefined ? {} : { device: config.slot },
      )
    } catch (e) {
      void this.transport.close()
      throw e
    }
  }

  get device(): VirtioDevice {
    return this.transport.device
  }

  async start(): Promise<void> {
    await this.device.ready?.()
    if (this.config.accelerate === false) return
    const accelerator = acceleratorFor(this.vm)
    if (accelerator) this.transport.accelerate(accelerator)
  }

  /** Added to a running machine: the bridge's hot-plug controller asks the guest to scan the slot. */
  plugged(): void {
    this.bridge.bridge.announce(this.transport)
  }

  /** Machine.unplug: the guest is asked to release the slot; resolves when it has ejected it. */
  unplug(): Promise<void> {
    return this.bridge.bridge.requestEject(this.transport)
  }

  /** Machine.pause: no guest memory access or interrupt from this device until resume. */
  pause(): Promise<void> {
    return this.transport.pause()
  }

  resume(): void {
    this.transport.resume()
  }

  /** Resettable (Machine.reset): the device back to status 0, as §2.1.2 describes a reset. */
  reset(): void {
    this.transport.reset()
  }

  /** ConfigPinner: the slot it was given (the first free one, unless `slot` said), so a restore builds it there. */
  pinnedConfig(): { slot: number } {
    return { slot: this.address.device }
  }

  // Snapshottable: the PCI function, the transport and its queues, and the device's own state (the
  // same TransportCore and device state as on virtio-mmio); pause() already made the device finish
  // what it took from its queues. A live device without state refuses, naming its type.
  quiesce(): void {}

  saveState(): VirtioPciState & { slot: number } {
    try {
      return { slot: this.address.device, ...this.transport.saveState() }
    } catch (e) {
      throw new Error(`${this.id}: ${(e as Error).message}`)
    }
  }

  restoreState(state: unknown): void {
    const s = new SavedState(this.id, state)
    const slot = s.int('slot', 0, 31)
    if (slot !== this.address.device)
      s.refuse('slot', `saved in slot ${slot}, this machine built it in slot ${this.address.device}`)
    const { slot: _, ...rest } = state as Record<string, unknown>
    this.transport.restoreState(new SavedState(this.id, rest))
  }

  dispose(): Promise<void> {
    this.bridge.bridge.detach(this.transport)
    return this.transport.close()
  }
}

/**
 * The virtio-pci component type `<name>-pci` of a catalogue entry: the device's schema and checks,
 * plus `bus`, `slot` and `accelerate`; no MMIO window or IRQ line (MSI-X, or INTx through the bridge).
 */
export function virtioPciType<C>(definition: VirtioDeviceDefinition<C>): ComponentType<C & VirtioPciOptions> {
  const { properties, required = [] } = definition.schema
  return {
    name: `${definition.name}-pci`,
    description: pciDescription(definition as VirtioDeviceDefinition<never>),
    schema: {
      properties: {
        ...properties,
        accelerate: {
          type: 'boolean',
          default: true,
          description: 'queue notifications by ioeventfd where the hypervisor has it',
        },
        ...pciDeviceProperties,
      },
      required: [...required, 'bus'],
    },
    references: [{ property: 'bus', types: ['pci-host-bridge'] }],
    resources: (config) => definition.resources?.(config) ?? [],
    module: new ContainerModule(({ bind }) => {
      bind(DeviceFactory).toConstantValue(definition.create as unknown as VirtioDeviceFactory)
      bind(Tokens.Component).to(VirtioPci)
    }),
  }
}
