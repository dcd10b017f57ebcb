import {
  type Component,
  type ComponentResources,
  type ComponentType,
  ContainerModule,
  describeThrown,
  type GuestMemory,
  guestMessages,
  hex,
  inject,
  injectable,
  type JsonSchema,
  type MmioDevice,
  SavedState,
  Tokens,
  type VirtualMachine,
} from '@vmm/core'
import {
  DeviceFactory,
  mmioDescription,
  type VirtioDeviceDefinition,
  type VirtioDeviceFactory,
} from '../definition.js'
import type { VirtioDevice } from '../device.js'
import { acceleratorFor } from './accelerator.js'
import { MMIO_WINDOW_SIZE, type VirtioMmioState, VirtioMmioTransport } from './transport.js'

/** Options every virtio-mmio component has besides its device's own. */
export interface VirtioMmioOptions {
  /** Use ioeventfd/irqfd where the hypervisor has them (default true); false forces trapped MMIO. */
  accelerate?: boolean
}

/**
 * A virtio device on the virtio-mmio transport as a machine component: an MMIO window `regs` of
 * 4 KiB and an interrupt line `irq`. The guest learns of it from `cmdline`
 * (`virtio_mmio.device=4K@<base>:<irq>`), which the board appends to the kernel command line.
 */
@injectable()
export class VirtioMmio implements MmioDevice, Component {
  readonly transport: VirtioMmioTransport
  readonly base: number

  constructor(
    @inject(Tokens.Config) private readonly config: VirtioMmioOptions & Record<string, unknown>,
    @inject(Tokens.Id) readonly id: string,
    @inject(Tokens.Resources) resources: ComponentResources,
    @inject(Tokens.GuestMemory) memory: GuestMemory,
    @inject(Tokens.VirtualMachine) private readonly vm: VirtualMachine,
    @inject(DeviceFactory) factory: VirtioDeviceFactory,
  ) {
    this.base = resources.window('regs').base
    const irq = resources.irq('irq')
    this.transport = new VirtioMmioTransport(factory(config, id), memory, irq, {
      onNeedsReset: (error) =>
        guestMessages.report(
          `${id}: device needs reset`,
          `${id}: device needs reset: ${describeThrown(error)}`,
        ),
    })
  }

  get device(): VirtioDevice {
    return this.transport.device
  }

  /** The kernel command line parameter that announces this device to Linux. */
  get kernelCmdline(): string {
    return virtioMmioCmdline(this.base, this.transport.irqNumber)
  }

  async start(): Promise<void> {
    await this.device.ready?.()
    if (this.config.accelerate === false) return
    const accelerator = acceleratorFor(this.vm)
    if (accelerator) this.transport.accelerate(this.base, accelerator)
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

  dispose(): Promise<void> {
    return this.transport.dispose()
  }

  // Snapshottable: the transport and its queues, and the device's own state; a live device that
  // has none refuses the snapshot (TransportCore.saveState), naming its type. pause() already made
  // the device finish what it took from its queues.
  quiesce(): void {}

  saveState(): VirtioMmioState {
    try {
      return this.transport.saveState()
    } catch (e) {
      throw new Error(`${this.id}: ${(e as Error).message}`)
    }
  }

  restoreState(state: unknown): void {
    this.transport.restoreState(new SavedState(this.id, state))
  }

  read(offset: number, data: Uint8Array): void {
    this.transport.read(offset, data)
  }

  write(offset: number, data: Uint8Array): void {
    this.transport.write(offset, data)
  }
}

/** `virtio_mmio.device=<size>@<base>:<irq>` (Linux drivers/virtio/virtio_mmio.c). */
export function virtioMmioCmdline(base: number, irq: number): string {
  return `virtio_mmio.device=4K@${hex(base)}:${irq}`
}

const commonSchema: Record<string, JsonSchema> = {
  accelerate: {
    type: 'boolean',
    default: true,
    description: 'queue notifications by ioeventfd and interrupts by irqfd where the hypervisor has them',
  },
}

/** The virtio-mmio component type of a catalogue entry: its schema plus `accelerate`, a window and an IRQ. */
export function virtioMmioType<C>(
  definition: VirtioDeviceDefinition<C>,
): ComponentType<C & VirtioMmioOptions> {
  return {
    name: definition.name,
    description: mmioDescription(definition as VirtioDeviceDefinition<never>),
    schema: { ...definition.schema, properties: { ...definition.schema.properties, ...commonSchema } },
    resources: (config) => [
      ...(definition.resources?.(config) ?? []),
      { kind: 'mmio', name: 'regs', size: MMIO_WINDOW_SIZE, align: MMIO_WINDOW_SIZE },
      { kind: 'irq', name: 'irq' },
    ],
    module: new ContainerModule(({ bind }) => {
      bind(DeviceFactory).toConstantValue(definition.create as unknown as VirtioDeviceFactory)
      bind(Tokens.Component).to(VirtioMmio)
    }),
  }
}
