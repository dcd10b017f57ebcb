// virtio devices on PCI as machine components: `virtio-blk-pci`, `virtio-rng-pci`, ... each made
// from the virtio-mmio ComponentType of the same device by `virtioPciType`.
//
// Why a generated `<name>-pci` type rather than a `transport: pci` option on the existing types: a
// PCI device and an MMIO device need different things from the machine (a `bus` reference to a host
// bridge vs. an MMIO window and an IRQ line), and the manifest's schema and resource allocation are
// per type, so one type with a switch would accept `bus` on MMIO and allocate a window for PCI.
// Generating the variant keeps everything device-specific in one place: the device's schema
// properties, its `resources` checks (e.g. that virtio-blk's image exists) and its device factory
// (the MMIO type's module binds it under DeviceFactory; the PCI module loads that module and
// replaces only the component). A new device type gets its PCI variant with one line.
import {
  type Component,
  type ComponentType,
  ContainerModule,
  type GuestMemory,
  inject,
  injectable,
  referenceToken,
  Tokens,
  type VirtualMachine,
} from '@vmm/core'
import { type PciAddress, type PciHostBridgeComponent, pciDeviceProperties } from '@vmm/pci'
import { DeviceFactory, type VirtioDeviceFactory, type VirtioMmioOptions } from '../component.js'
import type { VirtioDevice } from '../device.js'
import { acceleratorFor } from '../mmio/kvm.js'
import { VirtioPciTransport } from './transport.js'

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
        process.emitWarning(`${id}: device needs reset: ${(error as Error)?.message ?? String(error)}`),
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

  start(): void {
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

  dispose(): Promise<void> {
    this.bridge.bridge.detach(this.transport)
    return this.transport.close()
  }
}

/** The resources virtioMmioType adds for the MMIO transport, which a PCI device does not take. */
const MMIO_RESOURCES = new Set(['regs', 'irq'])

/**
 * The PCI variant `<name>-pci` of a virtio-mmio component type made by virtioMmioType: the same
 * device schema and checks, plus `bus` and `slot`, and no MMIO window or IRQ line.
 */
export function virtioPciType<C>(
  mmio: ComponentType<C & VirtioMmioOptions>,
): ComponentType<C & VirtioMmioOptions & VirtioPciOptions> {
  const { properties, required = [] } = mmio.schema
  return {
    name: `${mmio.name}-pci`,
    description: `${mmio.description.replace(/ ?\(virtio-mmio\)/, '')} on PCI (virtio-pci, MSI-X)`,
    schema: {
      properties: {
        ...properties,
        ...pciDeviceProperties,
        accelerate: {
          type: 'boolean',
          default: true,
          description: 'queue notifications by ioeventfd where the hypervisor has it',
        },
      },
      required: [...required, 'bus'],
    },
    references: [{ property: 'bus', types: ['pci-host-bridge'] }],
    resources: (config) => (mmio.resources?.(config) ?? []).filter((r) => !MMIO_RESOURCES.has(r.name)),
    module: new ContainerModule((options) => {
      // The MMIO module binds the device factory and its own component; keep the first only.
      void mmio.module.load(options)
      options.rebind(Tokens.Component).to(VirtioPci)
    }),
  }
}
