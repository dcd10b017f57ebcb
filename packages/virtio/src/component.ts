import {
  type Component,
  type ComponentResources,
  type ComponentType,
  ContainerModule,
  type GuestMemory,
  hex,
  inject,
  injectable,
  type JsonSchema,
  type MmioDevice,
  Tokens,
  type VirtualMachine,
} from '@vmm/core'
import type { VirtioDevice } from './device.js'
import { acceleratorFor } from './mmio/kvm.js'
import { MMIO_WINDOW_SIZE, VirtioMmioTransport } from './mmio/transport.js'

/** Options every virtio-mmio component has besides its device's own. */
export interface VirtioMmioOptions {
  /** Use ioeventfd/irqfd where the hypervisor has them (default true); false forces trapped MMIO. */
  accelerate?: boolean
}

/** Builds the device of a virtio component from its validated config. */
export type VirtioDeviceFactory = (config: Record<string, unknown>, id: string) => VirtioDevice

/** Where a virtio component type's module binds its VirtioDeviceFactory (the PCI variants reuse it). */
export const DeviceFactory: symbol = Symbol.for('@vmm/virtio:DeviceFactory')

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
        process.emitWarning(`${id}: device needs reset: ${(error as Error)?.message ?? String(error)}`),
    })
  }

  get device(): VirtioDevice {
    return this.transport.device
  }

  /** The kernel command line parameter that announces this device to Linux. */
  get kernelCmdline(): string {
    return virtioMmioCmdline(this.base, this.transport.irqNumber)
  }

  start(): void {
    if (this.config.accelerate === false) return
    const accelerator = acceleratorFor(this.vm)
    if (accelerator) this.transport.accelerate(this.base, accelerator)
  }

  dispose(): Promise<void> {
    return this.transport.dispose()
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

/** A component type for a virtio-mmio device whose config `C` is described by `schema`. */
export function virtioMmioType<C>(spec: {
  name: string
  description: string
  schema: { properties: Record<string, JsonSchema>; required?: readonly string[] }
  resources?: ComponentType<C>['resources']
  create(config: C, id: string): VirtioDevice
}): ComponentType<C & VirtioMmioOptions> {
  return {
    name: spec.name,
    description: spec.description,
    schema: { ...spec.schema, properties: { ...spec.schema.properties, ...commonSchema } },
    resources: (config) => [
      ...(spec.resources?.(config) ?? []),
      { kind: 'mmio', name: 'regs', size: MMIO_WINDOW_SIZE, align: MMIO_WINDOW_SIZE },
      { kind: 'irq', name: 'irq' },
    ],
    module: new ContainerModule(({ bind }) => {
      bind(DeviceFactory).toConstantValue(spec.create as unknown as VirtioDeviceFactory)
      bind(Tokens.Component).to(VirtioMmio)
    }),
  }
}
