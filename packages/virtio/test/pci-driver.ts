// A virtio-pci driver for tests, doing what Linux's virtio_pci_modern.c does: it finds the device
// through configuration mechanism #1, walks the capability list to the virtio structures, enables
// MSI-X with one vector for configuration changes and one per queue, negotiates, sets up split
// queues through the common configuration and rings doorbells. Guest memory and the BAR live on
// the buses of a PciHostBridge with a RecordingMsiRouter.
import { type GuestAddress, type GuestMemory, guestAddress, MmioBus, PioBus } from '@vmm/core'
import { BusBarMapper, CapabilityId, Command, PciHostBridge, RecordingMsiRouter, Reg } from '@vmm/pci'
import type { VirtioDevice } from '../src/device.js'
import { CommonCfg, PciCapType, VirtioPciTransport } from '../src/pci/transport.js'
import { Feature, Status } from '../src/spec.js'
import { DriverQueue, INDIRECT_TABLE_MAX, TestInterruptLine, testMemory } from '../src/testing/index.js'

export interface VirtioCap {
  at: number
  type: number
  bar: number
  offset: number
  length: number
}

/** A bus with `device` on virtio-pci; `memory` shares another rig's guest RAM (a restore's). */
export function pciRig<D extends VirtioDevice>(
  device: D,
  memorySize = 4 << 20,
  memory = testMemory(memorySize),
) {
  const pio = new PioBus()
  const mmio = new MmioBus()
  const msi = new RecordingMsiRouter()
  const lines = [16, 17, 18, 19].map((n) => new TestInterruptLine(n))
  const bridge = new PciHostBridge({
    ecam: { base: 0xe0000000, size: 0x100000 },
    buses: 1,
    mmio32: { base: 0xc0000000, size: 0x10000000 },
    mmio64: { base: 0x4000000000, size: 0x4000000000 },
    io: { base: 0xc000, size: 0x1000 },
    intx: lines,
    mapper: new BusBarMapper(mmio, pio),
    msi,
  })
  pio.insert(bridge.cam, 0xcf8, 8)
  const failures: unknown[] = []
  const transport = new VirtioPciTransport(device, memory, { onNeedsReset: (e) => failures.push(e) })
  const slot = bridge.attach(transport).device
  const driver = new PciDriver(pio, mmio, memory, slot)
  return { device, memory, pio, mmio, msi, lines, bridge, transport, slot, driver, failures }
}

export interface PciDriverOptions {
  features?: bigint
  /** Queue sizes to write (default: what the device reports, capped at 256). */
  queueSizes?: readonly number[]
  /** Leave MSI-X off (INTx + ISR). */
  intx?: boolean
}

export class PciDriver {
  readonly caps: VirtioCap[] = []
  readonly queues: DriverQueue[] = []
  msixCap = 0
  private heapNext = 0x1000

  constructor(
    private readonly pio: PioBus,
    private readonly mmio: MmioBus,
    readonly memory: GuestMemory,
    readonly slot: number,
  ) {}

  // Configuration mechanism #1.
  private select(reg: number): void {
    const d = new Uint8Array(4)
    new DataView(d.buffer).setUint32(0, (0x80000000 | (this.slot << 11) | (reg & 0xfc)) >>> 0, true)
    this.pio.write(0xcf8, d)
  }
  cfgRead(reg: number, n: 1 | 2 | 4 = 4): number {
    this.select(reg)
    const d = new Uint8Array(n)
    this.pio.read(0xcfc + (reg & 3), d)
    return le(d)
  }
  cfgWrite(reg: number, value: number, n: 1 | 2 | 4 = 4): void {
    this.select(reg)
    this.pio.write(0xcfc + (reg & 3), toLe(value, n))
  }

  /** Walks the capability list from 0x34 (PCI 3.0 §6.7) and keeps the virtio ones (§4.1.4). */
  walkCapabilities(): number[] {
    const ids: number[] = []
    this.caps.length = 0
    for (let at = this.cfgRead(Reg.CapabilitiesPointer, 1); at !== 0 && ids.length < 48; ) {
      const id = this.cfgRead(at, 1)
      ids.push(id)
      if (id === CapabilityId.MsiX) this.msixCap = at
      if (id === CapabilityId.VendorSpecific)
        this.caps.push({
          at,
          type: this.cfgRead(at + 3, 1),
          bar: this.cfgRead(at + 4, 1),
          offset: this.cfgRead(at + 8),
          length: this.cfgRead(at + 12),
        })
      at = this.cfgRead(at + 1, 1)
    }
    return ids
  }

  cap(type: number): VirtioCap {
    const c = this.caps.find((x) => x.type === type)
    if (!c) throw new Error(`no virtio capability of type ${type}`)
    return c
  }

  barAddress(bar: number): number {
    const lo = this.cfgRead(Reg.Bar0 + 4 * bar)
    const hi = (lo & 6) === 4 ? this.cfgRead(Reg.Bar0 + 4 * bar + 4) : 0
    return lo - (lo & 0xf) + hi * 2 ** 32
  }

  enableDecoding(): void {
    this.cfgWrite(Reg.Command, Command.MemorySpace | Command.BusMaster, 2)
  }

  /** An access at `offset` of the structure of type `type`. */
  read(type: number, offset: number, n: 1 | 2 | 4 | 8): number {
    const c = this.cap(type)
    const d = new Uint8Array(n)
    this.mmio.read(this.barAddress(c.bar) + c.offset + offset, d)
    return le(d)
  }
  write(type: number, offset: number, value: number, n: 1 | 2 | 4 | 8): void {
    const c = this.cap(type)
    this.mmio.write(this.barAddress(c.bar) + c.offset + offset, toLe(value, n))
  }
  common(offset: number, n: 1 | 2 | 4 | 8): number {
    return this.read(PciCapType.COMMON, offset, n)
  }
  setCommon(offset: number, value: number, n: 1 | 2 | 4 | 8): void {
    this.write(PciCapType.COMMON, offset, value, n)
  }

  get status(): number {
    return this.common(CommonCfg.DEVICE_STATUS, 1)
  }

  /** MSI-X table entry `v` (PCI 3.0 §6.8.2): the message and the mask bit. */
  setMsixEntry(v: number, address: number, data: number, masked = false): void {
    const table = this.cfgRead(this.msixCap + 4)
    const base = this.barAddress(table & 7) + (table & ~7) + 16 * v
    this.mmio.write(base, toLe(address % 2 ** 32, 4))
    this.mmio.write(base + 4, toLe(Math.floor(address / 2 ** 32), 4))
    this.mmio.write(base + 8, toLe(data, 4))
    this.mmio.write(base + 12, toLe(masked ? 1 : 0, 4))
  }
  pbaPending(v: number): boolean {
    const pba = this.cfgRead(this.msixCap + 8)
    const d = new Uint8Array(8)
    this.mmio.read(this.barAddress(pba & 7) + (pba & ~7), d)
    return ((le(d.subarray(v >> 3, (v >> 3) + 1)) >> (v & 7)) & 1) === 1
  }
  /** Message Control: bit 15 enable, bit 14 function mask. */
  setMsix(enable: boolean, functionMask = false): void {
    this.cfgWrite(this.msixCap + 2, (enable ? 0x8000 : 0) | (functionMask ? 0x4000 : 0), 2)
  }

  alloc(size: number, align = 16): GuestAddress {
    const at = Math.ceil(this.heapNext / align) * align
    this.heapNext = at + size
    this.memory.write(guestAddress(at), new Uint8Array(size))
    return guestAddress(at)
  }

  /** §3.1.1 with the virtio-pci specifics of §4.1.5.1; returns the accepted features. */
  init(options: PciDriverOptions = {}): bigint {
    this.walkCapabilities()
    this.enableDecoding()
    if (!options.intx) {
      this.setMsixEntry(0, 0xfee00000, 0x30)
      this.setMsix(true)
    }
    this.setCommon(CommonCfg.DEVICE_STATUS, 0, 1)
    this.setCommon(CommonCfg.DEVICE_STATUS, Status.ACKNOWLEDGE, 1)
    this.setCommon(CommonCfg.DEVICE_STATUS, Status.ACKNOWLEDGE | Status.DRIVER, 1)
    const offered = this.offeredFeatures()
    const features = ((options.features ?? 0n) | (1n << Feature.VERSION_1)) & offered
    for (const sel of [0, 1]) {
      this.setCommon(CommonCfg.DRIVER_FEATURE_SELECT, sel, 4)
      this.setCommon(CommonCfg.DRIVER_FEATURE, Number((features >> BigInt(32 * sel)) & 0xffff_ffffn), 4)
    }
    const negotiating = Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK
    this.setCommon(CommonCfg.DEVICE_STATUS, negotiating, 1)
    if (!(this.status & Status.FEATURES_OK)) throw new Error('the device refused the features')
    if (!options.intx) this.setCommon(CommonCfg.CONFIG_MSIX_VECTOR, 0, 2)
    const n = this.common(CommonCfg.NUM_QUEUES, 2)
    this.queues.length = 0
    for (let i = 0; i < n; i++) {
      this.setCommon(CommonCfg.QUEUE_SELECT, i, 2)
      const size = options.queueSizes?.[i] ?? Math.min(this.common(CommonCfg.QUEUE_SIZE, 2), 256)
      const desc = this.alloc(16 * Math.max(size, 1), 16)
      const avail = this.alloc(6 + 2 * Math.max(size, 1), 2)
      const used = this.alloc(6 + 8 * Math.max(size, 1), 4)
      const indirect = this.alloc(16 * INDIRECT_TABLE_MAX * Math.max(size, 1), 16)
      this.setCommon(CommonCfg.QUEUE_SIZE, size, 2)
      if (!options.intx) {
        this.setMsixEntry(i + 1, 0xfee00000, 0x31 + i)
        this.setCommon(CommonCfg.QUEUE_MSIX_VECTOR, i + 1, 2)
      }
      this.setCommon(CommonCfg.QUEUE_DESC, desc, 8)
      this.setCommon(CommonCfg.QUEUE_DRIVER, avail, 4) // two halves, as Linux's vp_iowrite64_twopart
      this.setCommon(CommonCfg.QUEUE_DRIVER + 4, 0, 4)
      this.setCommon(CommonCfg.QUEUE_DEVICE, used, 4)
      this.setCommon(CommonCfg.QUEUE_DEVICE + 4, 0, 4)
      this.setCommon(CommonCfg.QUEUE_ENABLE, 1, 2)
      this.queues.push(new DriverQueue(this.memory, size, desc, avail, used, indirect))
    }
    this.setCommon(CommonCfg.DEVICE_STATUS, negotiating | Status.DRIVER_OK, 1)
    return features
  }

  offeredFeatures(): bigint {
    this.setCommon(CommonCfg.DEVICE_FEATURE_SELECT, 0, 4)
    const lo = this.common(CommonCfg.DEVICE_FEATURE, 4)
    this.setCommon(CommonCfg.DEVICE_FEATURE_SELECT, 1, 4)
    return (BigInt(this.common(CommonCfg.DEVICE_FEATURE, 4)) << 32n) | BigInt(lo)
  }

  queue(i: number): DriverQueue {
    const q = this.queues[i]
    if (!q) throw new Error(`queue ${i} is not set up`)
    return q
  }

  /** §4.1.4.4: a 16-bit write of the queue index at queue_notify_off * notify_off_multiplier. */
  notify(i: number): void {
    this.setCommon(CommonCfg.QUEUE_SELECT, i, 2)
    const off = this.common(CommonCfg.QUEUE_NOTIFY_OFF, 2)
    const multiplier = this.cfgRead(this.cap(PciCapType.NOTIFY).at + 16)
    this.write(PciCapType.NOTIFY, off * multiplier, i, 2)
  }

  isr(): number {
    return this.read(PciCapType.ISR, 0, 1)
  }
}

function le(d: Uint8Array): number {
  let v = 0
  for (let i = d.length - 1; i >= 0; i--) v = v * 256 + d[i]!
  return v
}

function toLe(value: number, n: number): Uint8Array {
  const d = new Uint8Array(n)
  let v = value
  for (let i = 0; i < n; i++) {
    d[i] = v % 256
    v = Math.floor(v / 256)
  }
  return d
}
