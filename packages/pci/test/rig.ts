// The PCI test rig: a host bridge with the test device attached, and guest-side accessors.
import {
  AddressSpace,
  type InterruptLine,
  MemoryRegion,
  MmioBus,
  PioBus,
  RamBacking,
  type SlotChanges,
} from '@vmm/core'
import {
  AddressSpaceBarMapper,
  BusBarMapper,
  PciHostBridge,
  PciTestDevice,
  RecordingMsiRouter,
  TESTDEV_DEVICE,
  TESTDEV_VENDOR,
} from '../src/index.js'

export class Line implements InterruptLine {
  levels: boolean[] = []
  constructor(readonly irq: number) {}
  setLevel(high: boolean): void {
    this.levels.push(high)
  }
  pulse(): void {
    this.levels.push(true, false)
  }
  get level(): boolean {
    return this.levels.at(-1) ?? false
  }
}

export function setup(model: 'stacked' | 'flat' = 'stacked') {
  const ram = RamBacking.allocate(0x100000)
  const root = MemoryRegion.container('system', 2 ** 52)
  root.addSubregion(MemoryRegion.ram('ram', ram, 0, 0x100000), 0)
  const slotChanges: SlotChanges[] = []
  const space = new AddressSpace(root, (c) => slotChanges.push(c))
  const pio = new PioBus()
  const mmio = new MmioBus()
  const conflicts: string[] = []
  const mapper =
    model === 'stacked'
      ? new AddressSpaceBarMapper(space, pio, (m) => conflicts.push(m))
      : new BusBarMapper(mmio, pio, (m) => conflicts.push(m))
  const msi = new RecordingMsiRouter()
  const lines = [16, 17, 18, 19].map((n) => new Line(n))
  const bridge = new PciHostBridge({
    ecam: { base: 0xe0000000, size: 0x100000 },
    buses: 1,
    mmio32: { base: 0xc0000000, size: 0x10000000 },
    mmio64: { base: 0x4000000000, size: 0x4000000000 },
    io: { base: 0xc000, size: 0x1000 },
    intx: lines,
    mapper,
    msi,
  })
  pio.insert(bridge.cam, 0xcf8, 8)
  mmio.insert(bridge.ecamDevice, 0xe0000000, 0x100000)
  const dev = new PciTestDevice({
    vendorId: TESTDEV_VENDOR,
    deviceId: TESTDEV_DEVICE,
    msixVectors: 4,
    msiVectors: 4,
  })
  const address = bridge.attach(dev)

  // Guest-side helpers: configuration mechanism #1, as port accesses.
  const out32 = (port: number, v: number) => {
    const d = new Uint8Array(4)
    new DataView(d.buffer).setUint32(0, v >>> 0, true)
    pio.write(port, d)
  }
  const inN = (port: number, n: 1 | 2 | 4) => {
    const d = new Uint8Array(n)
    pio.read(port, d)
    let v = 0
    for (let i = n - 1; i >= 0; i--) v = v * 256 + d[i]!
    return v
  }
  const sel = (slot: number, reg: number) => out32(0xcf8, 0x80000000 | (slot << 11) | (reg & 0xfc))
  const cfgRead = (slot: number, reg: number, n: 1 | 2 | 4 = 4) => {
    sel(slot, reg)
    return inN(0xcfc + (reg & 3), n)
  }
  const cfgWrite = (slot: number, reg: number, v: number, n: 1 | 2 | 4 = 4) => {
    sel(slot, reg)
    const d = new Uint8Array(n)
    for (let i = 0; i < n; i++) d[i] = (v >>> (8 * i)) & 0xff
    pio.write(0xcfc + (reg & 3), d)
  }
  const mmioRead32 = (a: number) => {
    const d = new Uint8Array(4)
    if (!space.mmioRead(a, d)) mmio.read(a, d)
    return new DataView(d.buffer).getUint32(0, true)
  }
  const mmioWrite32 = (a: number, v: number) => {
    const d = new Uint8Array(4)
    new DataView(d.buffer).setUint32(0, v >>> 0, true)
    if (!space.mmioWrite(a, d)) mmio.write(a, d)
  }
  return {
    space,
    pio,
    mmio,
    bridge,
    dev,
    slot: address.device,
    msi,
    lines,
    conflicts,
    slotChanges,
    cfgRead,
    cfgWrite,
    inN,
    mmioRead32,
    mmioWrite32,
  }
}
