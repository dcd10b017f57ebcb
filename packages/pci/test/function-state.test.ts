// A PCI function's and a host bridge's saved state (issue 15), on the test rig's bus (fake guest
// memory, a recording MSI router): what the guest programmed (a moved BAR, Command, the MSI-X
// table with a masked pending vector, MSI's pending bits, INTx asserted, CONFIG_ADDRESS half-way
// through an access) comes back on a fresh bus from the state as the snapshot file encodes it,
// and the BAR decodes where the guest put it; a corrupted or foreign state is refused naming what.
import { decodeState, encodeState, guestAddress, SavedState } from '@vmm/core'
import { describe, expect, it } from 'vitest'
import { Command, Reg, restoreBridgeState, saveBridgeState } from '../src/index.js'
import { setup } from './rig.js'

/** Through the snapshot file's encoding, as a restore reads it. */
const throughFile = <T>(v: T) => decodeState(encodeState(v), 'state.json') as T

/** The rig with a guest that moved BAR 0, set up MSI-X vector 1 (masked, pending) and MSI, raised INTx. */
function programmed() {
  const t = setup()
  t.cfgWrite(1, Reg.Command, Command.MemorySpace | Command.BusMaster, 2)
  t.cfgWrite(1, 0x10, 0xc8000000)
  const table = t.dev.barAddress(2)
  t.mmioWrite32(table + 16, 0xfee00000)
  t.mmioWrite32(table + 16 + 8, 0x41)
  t.mmioWrite32(table + 16 + 12, 1) // masked
  t.cfgWrite(1, t.dev.msix!.offset + 2, 0x8000, 2) // MSI-X on
  t.mmioWrite32(0xc8000000 + 0x0c, 1) // raise vector 1: pending, masked
  t.mmioWrite32(0xc8000000 + 0x04, 0xabcd)
  return { ...t, table }
}

describe('PCI function state', () => {
  it('a restored function decodes where the guest moved its BAR and delivers the pending MSI-X vector on unmask', () => {
    const a = programmed()
    expect(a.msi.deliveries).toEqual([])
    const saved = throughFile(a.dev.saveFunctionState())

    const b = setup()
    b.dev.restoreFunctionState(new SavedState('testdev', saved))
    expect(b.dev.barAddress(0)).toBe(0xc8000000)
    expect(b.space.resolve(guestAddress(0xc8000000))?.region.name).toBe('pci-testdev BAR 0')
    expect(b.cfgRead(1, Reg.Command, 2)).toBe(Command.MemorySpace | Command.BusMaster)
    expect(b.mmioRead32(b.dev.barAddress(2) + 0x800)).toBe(1 << 1) // the PBA
    // The guest unmasks: the restored entry's message goes out on a route made now.
    b.mmioWrite32(b.dev.barAddress(2) + 16 + 12, 0)
    expect(b.msi.deliveries).toEqual([{ gsi: 24, address: 0xfee00000, data: 0x41 }])
  })

  it('keeps MSI pending bits and an asserted INTx', () => {
    const a = setup()
    const cap = a.dev.msi!.offset
    a.cfgWrite(1, Reg.Command, Command.MemorySpace, 2)
    a.cfgWrite(1, cap + 4, 0xfee00000)
    a.cfgWrite(1, cap + 0xc, 0x40, 2)
    a.cfgWrite(1, cap + 0x10, 0b10) // vector 1 masked
    a.cfgWrite(1, cap + 2, 0x0021, 2)
    a.dev.interrupt(1)
    expect(a.cfgRead(1, cap + 0x14)).toBe(0b10)
    a.cfgWrite(1, cap + 2, 0, 2) // MSI off: the next interrupt is INTx
    a.dev.interrupt(0)
    const saved = throughFile(a.dev.saveFunctionState())
    const b = setup()
    b.dev.restoreFunctionState(new SavedState('testdev', saved))
    const line = b.lines[b.slot % 4]!
    expect(line.level).toBe(true)
    expect(b.cfgRead(1, Reg.Status, 2) & 0x8).toBe(0x8) // Interrupt Status
    b.cfgWrite(1, cap + 2, 0x0021, 2)
    b.cfgWrite(1, cap + 0x10, 0) // unmask: the pending vector fires
    expect(b.msi.deliveries.map((d) => d.data)).toEqual([0x41])
  })

  it.each([
    [
      'another device',
      (s: Saved) => (s.config[Reg.DeviceId] ^= 0xff),
      /testdev: saved state config: byte 0x2 is/,
    ],
    ['a capability moved', (s: Saved) => (s.config[Reg.CapabilitiesPointer] = 0x80), /byte 0x34 is 0x80/],
    ['a short space', (s: Saved) => (s.config = new Uint8Array(255)), /config: must be 4096 bytes/],
    [
      'bytes as a list',
      (s: Saved) => Object.assign(s, { config: [1, 2] }),
      /config: must be 4096 bytes \(\$bytes\), got \[1,2\]/,
    ],
    [
      'an unaligned MSI-X address',
      (s: Saved) => (s.msix!.table[0] = 1),
      /msix: saved state table: entry 0: Message Address bits 1:0 must be 0/,
    ],
    [
      'a pending bit past the table',
      (s: Saved) => (s.msix!.pba[0] = 0x10),
      /pba: pending bit 4: the function has 4 vectors/,
    ],
    ['no MSI-X state', (s: Saved) => (s.msix = null), /msix: this function has MSI-X; the state has none/],
    [
      'a foreign field',
      (s: Saved) => Object.assign(s, { bars: [] }),
      /testdev: saved state bars: unknown field/,
    ],
    ['a wrong INTx', (s: Saved) => Object.assign(s, { intx: 1 }), /intx: must be true or false/],
  ])('refuses %s, naming it', (_what, change, message) => {
    const saved = throughFile(programmed().dev.saveFunctionState())
    change(saved)
    const b = setup()
    const before = b.dev.config.bytes.slice()
    expect(() => b.dev.restoreFunctionState(new SavedState('testdev', saved))).toThrow(message)
    expect(b.dev.config.bytes).toEqual(before) // nothing applied
  })
})

type Saved = ReturnType<ReturnType<typeof setup>['dev']['saveFunctionState']>

describe('host bridge state', () => {
  it('keeps CONFIG_ADDRESS between the write to 0xCF8 and the access to 0xCFC, and the allocators', () => {
    const a = setup()
    a.cfgRead(1, Reg.DeviceId, 2) // selects 00:01.0 register 0
    const saved = throughFile(saveBridgeState(a.bridge))
    expect(saved.functions).toEqual(['00:00.0 0x1b36:0x8', '00:01.0 0x1234:0x7e57'])
    const b = setup()
    b.cfgRead(0, Reg.VendorId, 2) // another function selected on the fresh bus
    restoreBridgeState(b.bridge, new SavedState('pci', saved))
    expect(b.inN(0xcfc, 4)).toBe(a.inN(0xcfc, 4)) // 00:01.0's IDs, with no new CONFIG_ADDRESS
    expect(b.bridge.registers).toEqual(a.bridge.registers)
  })

  it.each([
    [
      'another bus',
      (s: BridgeSaved) => (s.functions = ['00:00.0 0x1b36:0x8']),
      /pci: saved state functions: bus 0 was 00:00.0 0x1b36:0x8; this machine has 00:00.0 0x1b36:0x8, 00:01.0 0x1234:0x7e57 \(not in the snapshot: 00:01.0 0x1234:0x7e57\)/,
    ],
    [
      'an allocator outside its window',
      (s: BridgeSaved) => (s.registers.io = 0x10),
      /io: 0x10 is outside the window/,
    ],
    [
      'a bridge of another vendor',
      (s: BridgeSaved) => (s.self.config[0] = 0),
      /pci: self: saved state config: byte 0x0/,
    ],
  ])('refuses %s', (_what, change, message) => {
    const saved = throughFile(saveBridgeState(setup().bridge))
    change(saved)
    expect(() => restoreBridgeState(setup().bridge, new SavedState('pci', saved))).toThrow(message)
  })
})

type BridgeSaved = ReturnType<typeof saveBridgeState>
