import { type GsiRoute, guestAddress } from '@vmm/core'
import { describe, expect, it } from 'vitest'
import {
  CapabilityId,
  Command,
  defaultIrqchipRoutes,
  GsiMsiRouter,
  PciDevice,
  PciTestDevice,
  Reg,
  Status,
  TESTDEV_DEVICE,
  TESTDEV_ID,
  TESTDEV_VENDOR,
} from '../src/index.js'

import { setup } from './rig.js'

describe('configuration mechanism #1 and ECAM', () => {
  it('finds the host bridge at 00:00.0 and the device at the first free slot', () => {
    const t = setup()
    expect(t.cfgRead(0, 0)).toBe(0x00081b36)
    expect(t.cfgRead(0, 0x08) >>> 8).toBe(0x060000) // host bridge class
    expect(t.slot).toBe(1)
    expect(t.cfgRead(1, 0)).toBe((TESTDEV_DEVICE << 16) | TESTDEV_VENDOR)
    expect(t.cfgRead(1, 2, 2)).toBe(TESTDEV_DEVICE)
    expect(t.cfgRead(1, 0x0e, 1)).toBe(0) // header type 0, single function
    // No function: all-ones (master abort).
    expect(t.cfgRead(5, 0)).toBe(0xffffffff)
  })

  it('latches only DWORD writes to CONFIG_ADDRESS and ignores accesses with the enable bit clear', () => {
    const t = setup()
    const d = new Uint8Array(4)
    new DataView(d.buffer).setUint32(0, 0x80000803, true) // bits 1:0 read back 0
    t.pio.write(0xcf8, d)
    expect(t.inN(0xcf8, 4)).toBe(0x80000800)
    t.pio.write(0xcf9, new Uint8Array([0x06])) // a byte write is not CONFIG_ADDRESS
    expect(t.inN(0xcf8, 4)).toBe(0x80000800)
    new DataView(d.buffer).setUint32(0, 0x00000800, true)
    t.pio.write(0xcf8, d)
    expect(t.inN(0xcfc, 4)).toBe(0xffffffff)
  })

  it('reaches the same registers through ECAM (bus 27:20, device 19:15, function 14:12)', () => {
    const t = setup()
    expect(t.mmioRead32(0xe0000000 + (1 << 15))).toBe((TESTDEV_DEVICE << 16) | TESTDEV_VENDOR)
    t.mmioWrite32(0xe0000000 + (1 << 15) + 0x3c, 0x0000000b)
    expect(t.cfgRead(1, 0x3c, 1)).toBe(0x0b)
    // Extended configuration space of a PCIe function is there (4 KiB) and reads zero.
    expect(t.mmioRead32(0xe0000000 + (1 << 15) + 0x100)).toBe(0)
  })
})

describe('type 0 header semantics', () => {
  it('keeps read-only registers and bits', () => {
    const t = setup()
    t.cfgWrite(1, 0x00, 0x12345678)
    expect(t.cfgRead(1, 0)).toBe((TESTDEV_DEVICE << 16) | TESTDEV_VENDOR)
    t.cfgWrite(1, 0x08, 0xffffffff)
    expect(t.cfgRead(1, 0x08)).toBe(0x00ff0001)
    t.cfgWrite(1, Reg.InterruptPin, 4, 1)
    expect(t.cfgRead(1, Reg.InterruptPin, 1)).toBe(1)
    // Command: only implemented bits stick.
    t.cfgWrite(1, Reg.Command, 0xffff, 2)
    expect(t.cfgRead(1, Reg.Command, 2)).toBe(0x0547)
    // Capabilities List in Status is read-only and set.
    expect(t.cfgRead(1, Reg.Status, 2) & Status.CapabilitiesList).toBeTruthy()
  })

  it('clears write-1-to-clear status bits only where 1 is written', () => {
    const t = setup()
    t.dev.config.set16(
      Reg.Status,
      t.dev.config.u16(Reg.Status) | Status.ReceivedMasterAbort | Status.DetectedParityError,
    )
    t.cfgWrite(1, Reg.Status, 0, 2)
    expect(t.cfgRead(1, Reg.Status, 2) & 0xa000).toBe(0xa000)
    t.cfgWrite(1, Reg.Status, Status.ReceivedMasterAbort, 2)
    expect(t.cfgRead(1, Reg.Status, 2) & 0xa000).toBe(0x8000)
    // A DWORD write to Command that also writes 1s to Status clears them, keeps Command's value.
    t.cfgWrite(1, Reg.Command, 0x80000002)
    expect(t.cfgRead(1, Reg.Command, 2)).toBe(0x0002)
    expect(t.cfgRead(1, Reg.Status, 2) & 0xa000).toBe(0)
  })

  it('sizes a 32-bit memory BAR, an I/O BAR and a 64-bit BAR by writing all-ones', () => {
    const t = setup()
    const bar0 = t.cfgRead(1, 0x10)
    t.cfgWrite(1, 0x10, 0xffffffff)
    expect(t.cfgRead(1, 0x10)).toBe(0xfffff000) // 4 KiB, 32-bit, non-prefetchable
    t.cfgWrite(1, 0x10, bar0)
    expect(t.cfgRead(1, 0x10)).toBe(bar0)

    t.cfgWrite(1, 0x14, 0xffffffff)
    expect(t.cfgRead(1, 0x14)).toBe(0x0000ffe1) // 32 ports, I/O indicator; 16-bit decode

    t.cfgWrite(1, 0x18, 0xffffffff)
    t.cfgWrite(1, 0x1c, 0xffffffff)
    expect(t.cfgRead(1, 0x18)).toBe(0xfffff00c) // type 10b: 64-bit, bit 3: prefetchable
    expect(t.cfgRead(1, 0x1c)).toBe(0xffffffff)
  })

  it('sizes a BAR larger than 4 GiB through its upper half', () => {
    const d = new PciDevice({ name: 'big', vendorId: 1, deviceId: 2, classCode: 0 })
    d.addBar(0, { kind: 'memory64', size: 2 ** 34, prefetchable: true, device: { read() {}, write() {} } })
    d.configWrite(0x10, new Uint8Array([0xff, 0xff, 0xff, 0xff]))
    d.configWrite(0x14, new Uint8Array([0xff, 0xff, 0xff, 0xff]))
    expect(d.config.u32(0x10)).toBe(0x0000000c)
    expect(d.config.u32(0x14)).toBe(0xfffffffc)
  })

  it('assigns BARs from the windows: 32-bit below 4 GiB, 64-bit above, I/O from the I/O window', () => {
    const t = setup()
    expect(t.dev.barAddress(0)).toBeGreaterThanOrEqual(0xc0000000)
    expect(t.dev.barAddress(0)).toBeLessThan(0xd0000000)
    expect(t.dev.barAddress(1)).toBeGreaterThanOrEqual(0xc000)
    expect(t.dev.barAddress(2)).toBe(0x4000000000)
    expect(t.cfgRead(1, 0x3c, 1)).toBe(17) // Interrupt Line: INTA# of slot 1 after the swizzle -> line 1
  })

  it('walks the capability list from 0x34: PCI Express, MSI-X, MSI, then the end', () => {
    const t = setup()
    const ids: number[] = []
    let at = t.cfgRead(1, Reg.CapabilitiesPointer, 1)
    while (at !== 0 && ids.length < 16) {
      expect(at % 4).toBe(0)
      expect(at).toBeGreaterThanOrEqual(0x40)
      ids.push(t.cfgRead(1, at, 1))
      at = t.cfgRead(1, at + 1, 1)
    }
    expect(ids).toEqual([CapabilityId.PciExpress, CapabilityId.MsiX, CapabilityId.Msi])
  })
})

describe('BAR mapping', () => {
  it('maps a memory BAR when Memory Space is enabled and re-flattens the address space when it moves', () => {
    const t = setup()
    t.slotChanges.length = 0 // the RAM slot added when the space was made
    const base = t.dev.barAddress(0)
    expect(t.space.resolve(guestAddress(base))).toBeUndefined()
    t.cfgWrite(1, Reg.Command, Command.MemorySpace, 2)
    expect(t.space.resolve(guestAddress(base))?.region.name).toBe('pci-testdev BAR 0')
    expect(t.mmioRead32(base)).toBe(TESTDEV_ID)
    t.mmioWrite32(base + 4, 0x1234)
    expect(t.mmioRead32(base + 8)).toBe(~0x1234 >>> 0)

    // The guest moves the BAR: the old address is empty, the new one answers.
    t.cfgWrite(1, 0x10, 0xc8000000)
    expect(t.space.resolve(guestAddress(base))).toBeUndefined()
    expect(t.space.resolve(guestAddress(0xc8000000))?.region.name).toBe('pci-testdev BAR 0')
    expect(t.mmioRead32(0xc8000000)).toBe(TESTDEV_ID)

    // Sizing with decoding on (all-ones) takes it off the bus rather than mapping it at the top.
    t.cfgWrite(1, 0x10, 0xffffffff)
    expect(t.space.ranges.filter((r) => r.region.name === 'pci-testdev BAR 0')).toEqual([])
    t.cfgWrite(1, 0x10, 0xc8000000)
    // Disabling Memory Space unmaps it; RAM slots were never touched.
    t.cfgWrite(1, Reg.Command, 0, 2)
    expect(t.space.resolve(guestAddress(0xc8000000))).toBeUndefined()
    expect(t.slotChanges.length).toBe(0)
  })

  it('keeps RAM visible where a BAR is pointed at it', () => {
    const t = setup()
    t.cfgWrite(1, 0x10, 0x1000)
    t.cfgWrite(1, Reg.Command, Command.MemorySpace, 2)
    expect(t.space.resolve(guestAddress(0x1000))?.region.kind).toBe('ram')
  })

  it('maps I/O BARs on the port bus when I/O Space is enabled', () => {
    const t = setup()
    const port = t.dev.barAddress(1)
    expect(t.inN(port, 4)).toBe(0xffffffff)
    t.cfgWrite(1, Reg.Command, Command.IoSpace, 2)
    expect(t.inN(port, 4)).toBe(TESTDEV_ID)
    t.cfgWrite(1, 0x14, 0xd000)
    expect(t.inN(0xd000, 4)).toBe(TESTDEV_ID)
    expect(t.inN(port, 4)).toBe(0xffffffff)
  })

  it('moves BARs on the MMIO bus with the flat model and reports a clash instead of throwing', () => {
    const t = setup('flat')
    t.cfgWrite(1, Reg.Command, Command.MemorySpace | Command.IoSpace, 2)
    const base = t.dev.barAddress(0)
    expect(t.mmioRead32(base)).toBe(TESTDEV_ID)
    t.cfgWrite(1, 0x10, 0xc4000000)
    expect(t.mmioRead32(0xc4000000)).toBe(TESTDEV_ID)
    // On top of the ECAM window: refused, left unmapped, reported.
    t.cfgWrite(1, 0x10, 0xe0000000)
    expect(t.conflicts[0]).toMatch(/pci-testdev BAR 0 at 0xe0000000 not mapped/)
    expect(t.mmioRead32(0xe0000000 + (1 << 15))).toBe((TESTDEV_DEVICE << 16) | TESTDEV_VENDOR)
  })
})

describe('interrupts', () => {
  function msixSetup() {
    const t = setup()
    t.cfgWrite(1, Reg.Command, Command.MemorySpace | Command.BusMaster, 2)
    const table = t.dev.barAddress(2)
    const cap = t.dev.msix!.offset
    const entry = (v: number, address: number, data: number) => {
      t.mmioWrite32(table + v * 16, address)
      t.mmioWrite32(table + v * 16 + 4, 0)
      t.mmioWrite32(table + v * 16 + 8, data)
    }
    const mask = (v: number, on: boolean) => t.mmioWrite32(table + v * 16 + 12, on ? 1 : 0)
    const pba = () => t.mmioRead32(table + 0x800)
    const regs = t.dev.barAddress(0)
    const raise = (v: number) => t.mmioWrite32(regs + 0x0c, v)
    return { ...t, table, cap, entry, mask, pba, raise, regs }
  }

  it('reads the MSI-X capability: table size, table and PBA in BAR 2, every vector masked at reset', () => {
    const t = msixSetup()
    expect(t.cfgRead(1, t.cap, 4) >>> 16).toBe(3) // table size - 1
    expect(t.cfgRead(1, t.cap + 4)).toBe(0x0000 | 2)
    expect(t.cfgRead(1, t.cap + 8)).toBe(0x0800 | 2)
    expect(t.mmioRead32(t.table + 12)).toBe(1)
    expect(t.mmioRead32(t.table + 3 * 16 + 12)).toBe(1)
  })

  it('delivers an unmasked MSI-X vector with the programmed address and data', () => {
    const t = msixSetup()
    t.cfgWrite(1, t.cap + 2, 0x8000, 2) // enable
    t.entry(1, 0xfee00000, 0x4041)
    t.mask(1, false)
    t.raise(1)
    expect(t.msi.deliveries).toEqual([{ gsi: 24, address: 0xfee00000, data: 0x4041 }])
    expect(t.mmioRead32(t.regs + 0x14)).toBe(3)
    expect(t.lines.every((l) => l.levels.length === 0)).toBe(true)
  })

  it('sets the pending bit for a masked vector and delivers it when the vector is unmasked', () => {
    const t = msixSetup()
    t.cfgWrite(1, t.cap + 2, 0x8000, 2)
    t.entry(2, 0xfee01000, 0x31)
    t.raise(2)
    expect(t.msi.deliveries).toEqual([])
    expect(t.pba()).toBe(1 << 2)
    t.mmioWrite32(t.table + 0x800, 0) // the PBA is read-only
    expect(t.pba()).toBe(1 << 2)
    t.mask(2, false)
    expect(t.msi.deliveries).toEqual([{ gsi: 24, address: 0xfee01000, data: 0x31 }])
    expect(t.pba()).toBe(0)
  })

  it('holds every vector pending under the function mask and delivers them when it clears', () => {
    const t = msixSetup()
    t.entry(0, 0xfee00000, 0x20)
    t.entry(3, 0xfee00000, 0x23)
    t.mask(0, false)
    t.mask(3, false)
    t.cfgWrite(1, t.cap + 2, 0xc000, 2) // enable + function mask
    t.raise(0)
    t.raise(3)
    expect(t.pba()).toBe(0b1001)
    expect(t.msi.deliveries).toEqual([])
    t.cfgWrite(1, t.cap + 2, 0x8000, 2)
    expect(t.msi.deliveries.map((d) => d.data)).toEqual([0x20, 0x23])
    expect(t.pba()).toBe(0)
  })

  it('re-routes a vector whose message the guest changed', () => {
    const t = msixSetup()
    t.cfgWrite(1, t.cap + 2, 0x8000, 2)
    t.entry(0, 0xfee00000, 0x30)
    t.mask(0, false)
    t.raise(0)
    t.entry(0, 0xfee02000, 0x31)
    t.raise(0)
    expect(t.msi.deliveries).toEqual([
      { gsi: 24, address: 0xfee00000, data: 0x30 },
      { gsi: 24, address: 0xfee02000, data: 0x31 },
    ])
  })

  it('falls back to MSI, with per-vector masking and pending bits', () => {
    const t = msixSetup()
    const cap = t.dev.msi!.offset
    expect(t.cfgRead(1, cap + 2, 2)).toBe(0x0184) // 4 vectors capable, 64-bit, per-vector mask
    t.cfgWrite(1, cap + 4, 0xfee00000)
    t.cfgWrite(1, cap + 8, 0)
    t.cfgWrite(1, cap + 0xc, 0x40, 2)
    t.cfgWrite(1, cap + 0x10, 0b10) // mask vector 1
    t.cfgWrite(1, cap + 2, 0x0021, 2) // enable, 4 vectors
    t.raise(0)
    t.raise(1)
    expect(t.msi.deliveries.map((d) => d.data)).toEqual([0x40])
    expect(t.cfgRead(1, cap + 0x14)).toBe(0b10)
    t.cfgWrite(1, cap + 0x10, 0)
    expect(t.msi.deliveries.map((d) => d.data)).toEqual([0x40, 0x41])
    expect(t.cfgRead(1, cap + 0x14)).toBe(0)
  })

  it('falls back to INTx: level until acknowledged, Interrupt Status follows, Interrupt Disable gates it', () => {
    const t = msixSetup()
    const line = t.lines[(t.slot + 1 - 1) % 4]!
    t.raise(0)
    expect(line.level).toBe(true)
    expect(t.cfgRead(1, Reg.Status, 2) & Status.InterruptStatus).toBeTruthy()
    t.mmioWrite32(t.regs + 0x10, 1)
    expect(line.level).toBe(false)
    expect(t.cfgRead(1, Reg.Status, 2) & Status.InterruptStatus).toBe(0)
    t.cfgWrite(1, Reg.Command, Command.MemorySpace | Command.InterruptDisable, 2)
    t.raise(0)
    expect(line.levels).toEqual([true, false])
    expect(t.cfgRead(1, Reg.Status, 2) & Status.InterruptStatus).toBeTruthy()
    t.cfgWrite(1, Reg.Command, Command.MemorySpace, 2)
    expect(line.level).toBe(true)
  })
})

describe('KVM routing', () => {
  it('installs the default irqchip routes plus one MSI route per vector and signals through irqfd', () => {
    const log: string[] = []
    let tables: GsiRoute[][] = []
    let fds = 0
    const router = new GsiMsiRouter(
      {
        setRoutes: (t) => {
          tables = [...tables, [...t]]
        },
      },
      {
        doorbell: () => undefined,
        // An irqfd: one eventfd per trigger, attached to its GSI until disposed.
        interrupt: (gsi) => {
          const n = fds++
          log.push(`irqfd gsi ${gsi}`)
          return {
            trigger: () => log.push(`signal ${n}`),
            dispose: () => log.push(`irqfd gsi ${gsi} off`, `close ${n}`),
          }
        },
      },
    )
    const v = router.allocate()
    v.update({ address: 0xfee00000, data: 0x4041 })
    v.signal()
    v.signal()
    expect(tables).toHaveLength(1)
    const last = tables[0]!
    expect(last.slice(0, defaultIrqchipRoutes().length)).toEqual(defaultIrqchipRoutes())
    expect(last.at(-1)).toEqual({ gsi: 24, type: 'msi', addressLo: 0xfee00000, addressHi: 0, data: 0x4041 })
    expect(log).toEqual(['irqfd gsi 24', 'signal 0', 'signal 0'])
    router.dispose()
    expect(log.slice(3)).toEqual(['irqfd gsi 24 off', 'close 0'])
    expect(tables.at(-1)).toEqual(defaultIrqchipRoutes())
  })

  it('routes GSI 0-15 to both PICs and the IOAPIC and 16-23 to the IOAPIC', () => {
    const r = defaultIrqchipRoutes()
    expect(r.filter((e) => e.gsi === 9)).toEqual([
      { gsi: 9, type: 'irqchip', irqchip: 2, pin: 9 },
      { gsi: 9, type: 'irqchip', irqchip: 1, pin: 1 },
    ])
    expect(r.filter((e) => e.gsi === 20)).toEqual([{ gsi: 20, type: 'irqchip', irqchip: 2, pin: 20 }])
  })
})

describe('hot-plug on bus 0', () => {
  it('cannot announce a device or ask for it back without a hot-plug controller', async () => {
    const { bridge, dev } = setup()
    expect(() => bridge.announce(dev)).toThrow(/no hot-plug controller/)
    await expect(bridge.requestEject(dev)).rejects.toThrow(/no hot-plug controller/)
  })

  it('announces, asks for a slot back, and takes the functions off the bus when the guest ejects it', async () => {
    const { bridge, dev, slot, cfgRead } = setup()
    const calls: string[] = []
    bridge.setHotplugController({
      plugged: (s) => calls.push(`plugged ${s}`),
      requestEject: (s) => calls.push(`eject? ${s}`),
    })
    const extra = new PciTestDevice({ vendorId: TESTDEV_VENDOR, deviceId: TESTDEV_DEVICE })
    const at = bridge.attach(extra).device
    bridge.announce(extra)
    const released = bridge.requestEject(extra)
    expect(calls).toEqual([`plugged ${at}`, `eject? ${at}`])
    bridge.ejected(0) // the bridge's own slot: ignored
    bridge.ejected(at)
    await released
    expect(bridge.device(at)).toBeUndefined()
    expect(cfgRead(at, 0)).toBe(0xffffffff) // nothing answers there now
    expect(bridge.slotOf(extra)).toBeUndefined()
    // A slot the guest ejects on its own is reported; the device leaves the bus all the same.
    const seen: number[] = []
    bridge.onGuestEject = (s) => seen.push(s)
    bridge.ejected(slot)
    expect(seen).toEqual([slot])
    expect(bridge.device(slot)).toBeUndefined()
    expect(bridge.slotOf(dev)).toBeUndefined()
  })
})
