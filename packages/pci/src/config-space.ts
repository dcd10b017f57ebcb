// A PCI function's configuration space as bytes plus two masks, the way real devices and QEMU
// describe register semantics: `wmask` says which bits software may write, `w1cmask` which bits a
// write of 1 clears (PCI Local Bus 3.0 §6.1, §6.2.3 "Status register"). Everything else is read-only
// to the guest; the device model writes it through the `set*` methods.

/** Offsets in the type 0 header (PCI Local Bus 3.0 §6.1, figure 6-1). */
export const Reg = {
  VendorId: 0x00,
  DeviceId: 0x02,
  Command: 0x04,
  Status: 0x06,
  RevisionId: 0x08,
  ClassCode: 0x09,
  CacheLineSize: 0x0c,
  LatencyTimer: 0x0d,
  HeaderType: 0x0e,
  Bist: 0x0f,
  Bar0: 0x10,
  CardbusCis: 0x28,
  SubsystemVendorId: 0x2c,
  SubsystemId: 0x2e,
  ExpansionRom: 0x30,
  CapabilitiesPointer: 0x34,
  InterruptLine: 0x3c,
  InterruptPin: 0x3d,
  MinGnt: 0x3e,
  MaxLat: 0x3f,
} as const

/** Command register bits (PCI 3.0 §6.2.2). */
export const Command = {
  IoSpace: 1 << 0,
  MemorySpace: 1 << 1,
  BusMaster: 1 << 2,
  ParityErrorResponse: 1 << 6,
  Serr: 1 << 8,
  InterruptDisable: 1 << 10,
} as const

/** Status register bits (PCI 3.0 §6.2.3). */
export const Status = {
  InterruptStatus: 1 << 3,
  CapabilitiesList: 1 << 4,
  MasterDataParityError: 1 << 8,
  SignaledTargetAbort: 1 << 11,
  ReceivedTargetAbort: 1 << 12,
  ReceivedMasterAbort: 1 << 13,
  SignaledSystemError: 1 << 14,
  DetectedParityError: 1 << 15,
} as const

/** Capability IDs (PCI Code and ID Assignment Specification 1.11 §2). */
export const CapabilityId = {
  PowerManagement: 0x01,
  Msi: 0x05,
  VendorSpecific: 0x09,
  PciExpress: 0x10,
  MsiX: 0x11,
} as const

/** Conventional PCI configuration space; PCIe functions have 4 KiB (PCIe 4.0 §7.2.2). */
export const CONFIG_SPACE_SIZE = 256
export const PCIE_CONFIG_SPACE_SIZE = 4096

export class ConfigSpace {
  readonly bytes: Uint8Array
  /** Bits software may write. */
  readonly wmask: Uint8Array
  /** Bits a write of 1 clears (RW1C). */
  readonly w1cmask: Uint8Array
  private readonly view: DataView

  constructor(readonly size: number = PCIE_CONFIG_SPACE_SIZE) {
    this.bytes = new Uint8Array(size)
    this.wmask = new Uint8Array(size)
    this.w1cmask = new Uint8Array(size)
    this.view = new DataView(this.bytes.buffer)
  }

  u8(offset: number): number {
    return this.bytes[offset]!
  }
  u16(offset: number): number {
    return this.view.getUint16(offset, true)
  }
  u32(offset: number): number {
    return this.view.getUint32(offset, true)
  }

  /** Sets a value as the device (no masks). */
  set8(offset: number, value: number): void {
    this.bytes[offset] = value
  }
  set16(offset: number, value: number): void {
    this.view.setUint16(offset, value, true)
  }
  set32(offset: number, value: number): void {
    this.view.setUint32(offset >>> 0, value >>> 0, true)
  }

  /** Marks bits of [offset, offset + width) writable by software. */
  writable(offset: number, width: 1 | 2 | 4, mask: number): void {
    for (let i = 0; i < width; i++) this.wmask[offset + i] = (mask >>> (8 * i)) & 0xff
  }

  /** Marks bits of [offset, offset + width) write-1-to-clear. */
  writeOneToClear(offset: number, width: 1 | 2 | 4, mask: number): void {
    for (let i = 0; i < width; i++) this.w1cmask[offset + i] = (mask >>> (8 * i)) & 0xff
  }

  /** A guest read of `data.length` bytes at `offset`; beyond the space reads as zero. */
  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) data[i] = offset + i < this.size ? this.bytes[offset + i]! : 0
  }

  /**
   * A guest write: each byte keeps its read-only bits, takes the writable bits from `data`, and
   * clears the RW1C bits written as 1. Returns whether anything changed.
   */
  write(offset: number, data: Uint8Array): boolean {
    let changed = false
    for (let i = 0; i < data.length; i++) {
      const at = offset + i
      if (at >= this.size) break
      const old = this.bytes[at]!
      const w = this.wmask[at]!
      const c = this.w1cmask[at]!
      const v = data[i]!
      const next = ((old & ~w) | (v & w)) & ~(v & c)
      if (next !== old) {
        this.bytes[at] = next
        changed = true
      }
    }
    return changed
  }
}

/** Little-endian value of a 1, 2 or 4 byte access. */
export function readLe(data: Uint8Array): number {
  let v = 0
  for (let i = data.length - 1; i >= 0; i--) v = v * 256 + data[i]!
  return v
}

/** Fills a 1, 2, 4 or 8 byte access with `value` little-endian (values up to 2^53). */
export function writeLe(data: Uint8Array, value: number): void {
  let v = value
  for (let i = 0; i < data.length; i++) {
    data[i] = v % 256
    v = Math.floor(v / 256)
  }
}

/** Whether [offset, offset + len) intersects [start, start + size). */
export function overlaps(offset: number, len: number, start: number, size: number): boolean {
  return offset < start + size && start < offset + len
}
