// The `pci-host-bridge` component: a PciHostBridge on the machine's buses. Its windows come from
// the resource allocator like any component's (pin `config: 0xcf8` in the manifest; the ECAM, the
// 32-bit MMIO window and the I/O window may be pinned or allocated), its INTx lines are four IRQs,
// and the 64-bit MMIO window is configuration because the allocator's pool is below 4 GiB.
import {
  type AddressSpace,
  type Component,
  type ComponentResources,
  type ComponentType,
  ConfigError,
  ContainerModule,
  type GuestMemory,
  hex,
  type MachineControl,
  type MmioBus,
  type PioBus,
  SavedState,
  sizeSchema,
  Tokens,
  type VirtualMachine,
} from '@vmm/core'
import { AddressSpaceBarMapper, type BarMapper, BusBarMapper } from '../bar-mapper.js'
import { type HostBridgeState, restoreBridgeState, saveBridgeState } from '../bridge-state.js'
import { PciHostBridge } from '../host-bridge.js'
import { type MsiRouter, msiRouterFor } from '../msi-router.js'

export interface PciHostBridgeConfig {
  /** Buses the ECAM window covers (1 MiB each); only bus 0 has devices (no bridges yet). */
  buses: number
  /** Size of the 32-bit MMIO window for memory BARs. */
  mmio32: number
  /** Size of the I/O port window for I/O BARs. */
  io: number
  /** The 64-bit MMIO window for 64-bit BARs (above RAM); size 0 puts them in the 32-bit window. */
  mmio64: { base: number; size: number }
}

/** The legacy configuration ports are architectural: CONFIG_ADDRESS is 0xCF8 (PCI 3.0 §3.2.2.3.2). */
export const CONFIG_ADDRESS_PORT = 0xcf8

const ONE_MIB = 0x100000

function nextPow2(n: number): number {
  let p = 1
  while (p < n) p *= 2
  return p
}

export class PciHostBridgeComponent implements Component {
  readonly bridge: PciHostBridge
  readonly router: MsiRouter
  private readonly cfgPort: number
  private readonly ecamBase: number

  constructor(
    readonly id: string,
    readonly config: PciHostBridgeConfig,
    resources: ComponentResources,
    memory: GuestMemory,
    private readonly pioBus: PioBus,
    private readonly mmioBus: MmioBus,
    vm: VirtualMachine,
    machine: MachineControl,
    addressSpace: AddressSpace | undefined,
  ) {
    const cfg = resources.window('config')
    if (cfg.base !== CONFIG_ADDRESS_PORT)
      throw new Error(
        `${id}: the configuration ports are at ${hex(cfg.base)}; mechanism #1 needs them at 0xcf8 (pin resources: { config: 0xcf8 })`,
      )
    const { mmio64 } = config
    if (mmio64.size > 0) {
      const clash = memory
        .ramRanges()
        .find((s) => s.start < mmio64.base + mmio64.size && mmio64.base < s.start + s.size)
      if (clash)
        throw new Error(
          `${id}: the 64-bit MMIO window [${hex(mmio64.base)}, +${hex(mmio64.size)}) overlaps guest RAM at ${hex(clash.start)}; move mmio64.base above RAM`,
        )
    }
    const report = (message: string) => machine.report(id, 'bar-conflict', { message })
    const mapper: BarMapper = addressSpace
      ? new AddressSpaceBarMapper(addressSpace, pioBus, report)
      : new BusBarMapper(mmioBus, pioBus, report)
    this.router = msiRouterFor(vm)
    const ecam = resources.window('ecam')
    this.bridge = new PciHostBridge({
      ecam,
      buses: config.buses,
      mmio32: resources.window('mmio32'),
      mmio64,
      io: resources.window('io'),
      intx: ['inta', 'intb', 'intc', 'intd'].map((n) => resources.irq(n)),
      mapper,
      msi: this.router,
    })
    // The guest may eject a slot on its own (Linux: echo 0 > /sys/bus/pci/slots/N/power): the
    // functions leave the bus, their components stay until the machine goes.
    this.bridge.onGuestEject = (slot, devices) =>
      machine.report(id, 'guest-ejected', { slot, devices: devices.map((d) => d.name) })
    this.cfgPort = cfg.base
    this.ecamBase = ecam.base
    pioBus.insert(this.bridge.cam, cfg.base, cfg.size)
    mmioBus.insert(this.bridge.ecamDevice, ecam.base, ecam.size)
  }

  // Snapshottable (bridge-state.ts): CONFIG_ADDRESS, the allocators, 00:00.0 and the bus's
  // population; each device component saves its own function. Restored first of the PCI parts
  // (build order: every device refers to its bridge), after every function is attached.
  quiesce(): void {}

  saveState(): HostBridgeState {
    return saveBridgeState(this.bridge)
  }

  restoreState(state: unknown): void {
    restoreBridgeState(this.bridge, new SavedState(this.id, state))
  }

  dispose(): void {
    this.pioBus.remove(this.cfgPort)
    this.mmioBus.remove(this.ecamBase)
    this.bridge.dispose()
  }
}

export const pciHostBridgeType: ComponentType<PciHostBridgeConfig> = {
  name: 'pci-host-bridge',
  description:
    'PCI Express host bridge: configuration mechanism #1 (0xcf8), ECAM, 32/64-bit MMIO and I/O windows for BARs, MSI/MSI-X, INTx',
  schema: {
    properties: {
      buses: {
        type: 'integer',
        minimum: 1,
        maximum: 256,
        default: 1,
        description: 'buses the ECAM window covers (1 MiB each)',
      },
      mmio32: { ...sizeSchema, default: 0x10000000, description: 'the 32-bit MMIO window for memory BARs' },
      io: { ...sizeSchema, default: 0x1000, description: 'the I/O window for I/O BARs' },
      mmio64: {
        type: 'object',
        additionalProperties: false,
        default: {},
        description: 'the 64-bit MMIO window (above RAM); size 0 puts 64-bit BARs below 4 GiB',
        properties: {
          base: { type: 'integer', minimum: 0, default: 0x4000000000 },
          size: { type: 'integer', minimum: 0, default: 0x4000000000 },
        },
      },
    },
  },
  resources: (config) => {
    if (config.mmio32 < ONE_MIB || config.mmio32 % ONE_MIB !== 0)
      throw new ConfigError('mmio32', `mmio32 is ${hex(config.mmio32)}; expected a multiple of 1 MiB`)
    if (config.io < 0x100 || config.io % 0x100 !== 0)
      throw new ConfigError('io', `io is ${hex(config.io)}; expected a multiple of 0x100`)
    if (
      config.mmio64.size > 0 &&
      (config.mmio64.base % ONE_MIB !== 0 || config.mmio64.base + config.mmio64.size > 2 ** 52)
    )
      throw new ConfigError('mmio64', 'mmio64 must be 1 MiB aligned and end below 2^52')
    return [
      { kind: 'pio', name: 'config', size: 8 },
      { kind: 'mmio', name: 'ecam', size: config.buses * ONE_MIB, align: nextPow2(config.buses) * ONE_MIB },
      { kind: 'mmio', name: 'mmio32', size: config.mmio32, align: ONE_MIB },
      { kind: 'pio', name: 'io', size: config.io, align: 0x100 },
      { kind: 'irq', name: 'inta' },
      { kind: 'irq', name: 'intb' },
      { kind: 'irq', name: 'intc' },
      { kind: 'irq', name: 'intd' },
    ]
  },
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).toDynamicValue(
      (ctx) =>
        new PciHostBridgeComponent(
          ctx.get(Tokens.Id),
          ctx.get(Tokens.Config) as unknown as PciHostBridgeConfig,
          ctx.get(Tokens.Resources),
          ctx.get(Tokens.GuestMemory),
          ctx.get(Tokens.PioBus),
          ctx.get(Tokens.MmioBus),
          ctx.get(Tokens.VirtualMachine),
          ctx.get(Tokens.MachineControl),
          ctx.get(Tokens.AddressSpace, { optional: true }),
        ),
    )
  }),
}
