// The `pci-testdev` component type: the PciTestDevice of ./device.ts on a pci-host-bridge.
import {
  type Component,
  type ComponentType,
  ContainerModule,
  referenceToken,
  SavedState,
  Tokens,
} from '@vmm/core'
import type { PciHostBridgeComponent } from '../../components/host-bridge.js'
import type { InterruptPath } from '../../device.js'
import type { PciFunctionState } from '../../function-state.js'
import type { PciAddress } from '../../host-bridge.js'
import { PciTestDevice, type PciTestDeviceConfig, TESTDEV_DEVICE, TESTDEV_VENDOR } from './device.js'

export interface PciTestDeviceState {
  slot: number
  function: PciFunctionState
  scratch: number
  raised: number
  lastPath: InterruptPath
}

/** The component: a PciTestDevice attached to the referenced host bridge. */
export class PciTestDeviceComponent implements Component {
  readonly device: PciTestDevice
  readonly address: PciAddress

  constructor(
    private readonly id: string,
    config: PciTestDeviceConfig,
    private readonly bridge: PciHostBridgeComponent,
  ) {
    this.device = new PciTestDevice(config)
    this.address = bridge.bridge.attach(this.device, config.slot === undefined ? {} : { device: config.slot })
  }

  /** Added to a running machine: the guest is told to scan the slot (Machine.hotplug). */
  plugged(): void {
    this.bridge.bridge.announce(this.device)
  }

  /** Machine.unplug: resolves when the guest has ejected the slot. */
  unplug(): Promise<void> {
    return this.bridge.bridge.requestEject(this.device)
  }

  /** ConfigPinner: the slot it was given, so a restore builds it there. */
  pinnedConfig(): { slot: number } {
    return { slot: this.address.device }
  }

  // Snapshottable: the function (configuration space, MSI, MSI-X) and the three registers.
  quiesce(): void {}

  saveState(): PciTestDeviceState {
    const d = this.device
    return {
      slot: this.address.device,
      function: d.saveFunctionState(),
      scratch: d.scratch,
      raised: d.raised,
      lastPath: d.lastPath,
    }
  }

  restoreState(state: unknown): void {
    const s = new SavedState(this.id, state).only('slot', 'function', 'scratch', 'raised', 'lastPath')
    const slot = s.int('slot', 0, 31)
    if (slot !== this.address.device)
      s.refuse('slot', `saved in slot ${slot}, this machine built it in slot ${this.address.device}`)
    const scratch = s.int('scratch', 0, 0xffff_ffff)
    const raised = s.int('raised', 0, Number.MAX_SAFE_INTEGER)
    const lastPath = s.string('lastPath', /^(none|intx|msi|msix)$/) as InterruptPath
    this.device.restoreFunctionState(s.nested('function'))
    Object.assign(this.device, { scratch, raised, lastPath })
  }

  dispose(): void {
    this.bridge.bridge.detach(this.device)
    this.device.dispose()
  }
}

/** Schema properties every PCI device component shares: the bridge it sits on and its slot. */
export const pciDeviceProperties = {
  bus: { type: 'string', description: 'the pci-host-bridge component this device sits on' },
  slot: {
    type: 'integer',
    minimum: 1,
    maximum: 31,
    description: 'device number on bus 0; the first free one when absent',
  },
} as const

export const pciTestDeviceType: ComponentType<PciTestDeviceConfig> = {
  name: 'pci-testdev',
  description: 'a PCI test device: registers in a memory and an I/O BAR, MSI-X in a 64-bit BAR, MSI, INTx',
  schema: {
    properties: {
      ...pciDeviceProperties,
      vendorId: { type: 'integer', minimum: 0, maximum: 0xfffe, default: TESTDEV_VENDOR },
      deviceId: { type: 'integer', minimum: 0, maximum: 0xffff, default: TESTDEV_DEVICE },
      msixVectors: { type: 'integer', minimum: 0, maximum: 128, default: 4 },
      msiVectors: { enum: [0, 1, 2, 4, 8, 16, 32], default: 1 },
    },
    required: ['bus'],
  },
  references: [{ property: 'bus', types: ['pci-host-bridge'] }],
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).toDynamicValue(
      (ctx) =>
        new PciTestDeviceComponent(
          ctx.get(Tokens.Id),
          ctx.get(Tokens.Config) as unknown as PciTestDeviceConfig,
          ctx.get(referenceToken<PciHostBridgeComponent>('bus')),
        ),
    )
  }),
}
