// The pci-host-bridge component's saved state: CONFIG_ADDRESS (a guest may be between its write
// to 0xCF8 and its access to 0xCFC when the vCPUs stop), the allocators (a device hot-plugged
// after the restore gets the BARs it would have got), the bridge's own function 00:00.0, and what
// sits on bus 0. The functions of other components are theirs to save; the list here only lets a
// restore refuse a bus that is populated differently (a snapshot of another machine) by slot.
import { hex, type SavedState } from '@vmm/core'
import { Reg } from './config-space.js'
import type { PciFunctionState } from './function-state.js'
import { type BridgeRegisters, formatPciAddress, type PciHostBridge } from './host-bridge.js'

export interface HostBridgeState {
  registers: BridgeRegisters
  self: PciFunctionState
  /** bus:device.function and vendor:device of every function on bus 0, the bridge's too. */
  functions: string[]
}

function population(bridge: PciHostBridge): string[] {
  return bridge.devices.map(
    ({ address, device }) =>
      `${formatPciAddress(address)} ${hex(device.config.u16(Reg.VendorId))}:${hex(device.config.u16(Reg.DeviceId))}`,
  )
}

export function saveBridgeState(bridge: PciHostBridge): HostBridgeState {
  return { registers: bridge.registers, self: bridge.self.saveFunctionState(), functions: population(bridge) }
}

/** Checks and puts back a saved state on a bridge whose functions are all attached (after realize). */
export function restoreBridgeState(bridge: PciHostBridge, s: SavedState): void {
  s.only('registers', 'self', 'functions')
  const r = s.nested('registers').only('configAddress', 'mmio32', 'mmio64', 'io')
  const registers: BridgeRegisters = {
    configAddress: r.int('configAddress', 0, 0xffff_ffff),
    mmio32: r.int('mmio32', 0, 2 ** 32),
    mmio64: r.isNull('mmio64') ? null : r.int('mmio64', 0, 2 ** 52),
    io: r.int('io', 0, 0x10000),
  }
  const here = population(bridge)
  const list = s.strings('functions', 256)
  const missing = list.filter((f) => !here.includes(f))
  const extra = here.filter((f) => !list.includes(f))
  if (missing.length > 0 || extra.length > 0)
    s.refuse(
      'functions',
      `bus 0 was ${list.join(', ') || 'empty'}; this machine has ${here.join(', ')}${missing.length ? ` (missing ${missing.join(', ')})` : ''}${extra.length ? ` (not in the snapshot: ${extra.join(', ')})` : ''}`,
    )
  try {
    bridge.setRegisters(registers)
  } catch (e) {
    r.refuse((e as Error).message.split(':')[0]!, (e as Error).message)
  }
  bridge.self.restoreFunctionState(s.nested('self'))
}
