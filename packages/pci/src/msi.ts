// MSI and MSI-X capabilities (PCI Local Bus 3.0 §6.8.1 and §6.8.2). The device model keeps the
// registers and decides whether a vector fires; an MsiRouter delivers the message.
import type { MmioDevice, SavedState } from '@vmm/core'
import { type ConfigSpace, overlaps } from './config-space.js'
import type { MsiRouter, MsiVector } from './msi-router.js'

/**
 * The MSI capability, 64-bit with per-vector masking (PCI 3.0 §6.8.1, figure 6-9):
 *   +0 ID, next, Message Control; +4 Message Address; +8 Message Upper Address;
 *   +0xC Message Data; +0x10 Mask Bits; +0x14 Pending Bits.
 */
export class MsiCapability {
  static readonly SIZE = 0x18
  private vectors: MsiVector[] = []
  private pendingBits = 0

  constructor(
    private readonly config: ConfigSpace,
    readonly offset: number,
    /** Vectors the function can use: 1, 2, 4, 8, 16 or 32. */
    readonly count: number,
    private readonly router: () => MsiRouter,
  ) {
    if (![1, 2, 4, 8, 16, 32].includes(count))
      throw new RangeError(`MSI: ${count} vectors is not a power of 2 up to 32`)
    const mmc = Math.log2(count)
    // Message Control: bit 0 enable (RW), 3:1 Multiple Message Capable (RO), 6:4 Multiple Message
    // Enable (RW), bit 7 64-bit address capable, bit 8 per-vector masking capable.
    config.set16(offset + 2, (mmc << 1) | (1 << 7) | (1 << 8))
    config.writable(offset + 2, 2, 0x0071)
    config.writable(offset + 4, 4, 0xfffffffc) // dword aligned (§6.8.1.4)
    config.writable(offset + 8, 4, 0xffffffff)
    config.writable(offset + 0xc, 2, 0xffff)
    config.writable(offset + 0x10, 4, count === 32 ? 0xffffffff : 2 ** count - 1)
  }

  get enabled(): boolean {
    return (this.config.u16(this.offset + 2) & 1) !== 0
  }
  /** Vectors the guest enabled (Multiple Message Enable, capped at what we offer). */
  get enabledCount(): number {
    return Math.min(this.count, 1 << ((this.config.u16(this.offset + 2) >> 4) & 7))
  }
  get address(): number {
    return this.config.u32(this.offset + 4) + this.config.u32(this.offset + 8) * 2 ** 32
  }
  get data(): number {
    return this.config.u16(this.offset + 0xc)
  }
  masked(vector: number): boolean {
    return ((this.config.u32(this.offset + 0x10) >>> vector) & 1) !== 0
  }
  pending(vector: number): boolean {
    return ((this.pendingBits >>> vector) & 1) !== 0
  }

  /** Called after any guest write that touched [offset, offset + len) of configuration space. */
  configWritten(offset: number, len: number): void {
    if (!overlaps(offset, len, this.offset, MsiCapability.SIZE)) return
    if (!this.enabled) return
    // Pending vectors that are now unmasked fire (§6.8.1.7: "the function must send the message").
    for (let v = 0; v < this.enabledCount; v++) {
      if (this.pending(v) && !this.masked(v)) {
        this.setPending(v, false)
        this.send(v)
      }
    }
  }

  /** Fires `vector`; false when MSI is off or the vector is not enabled. */
  notify(vector: number): boolean {
    if (!this.enabled || vector >= this.enabledCount) return false
    if (this.masked(vector)) this.setPending(vector, true)
    else this.send(vector)
    return true
  }

  private setPending(vector: number, on: boolean): void {
    this.pendingBits = on ? this.pendingBits | (1 << vector) : this.pendingBits & ~(1 << vector)
    this.config.set32(this.offset + 0x14, this.pendingBits >>> 0)
  }

  private send(vector: number): void {
    while (this.vectors.length <= vector) this.vectors.push(this.router().allocate())
    const n = this.enabledCount
    // With several vectors the function varies the low log2(n) bits of the data (§6.8.1.6).
    const data = (this.data & ~(n - 1)) | vector
    const v = this.vectors[vector]!
    v.update({ address: this.address, data })
    v.signal()
  }

  reset(): void {
    for (const v of this.vectors) v.release()
    this.vectors = []
    this.pendingBits = 0
  }

  /**
   * After a snapshot's configuration space was put back: the pending bits are the register's (the
   * device keeps them there too), and every vector is routed again at its next message.
   */
  restored(): void {
    for (const v of this.vectors) v.release()
    this.vectors = []
    const valid = this.count === 32 ? 0xffffffff : 2 ** this.count - 1
    this.pendingBits = this.config.u32(this.offset + 0x14) & valid
    this.config.set32(this.offset + 0x14, this.pendingBits >>> 0)
  }
}

/** MsixCapability's saved state: the table and the PBA as the guest and the device left them. */
export interface MsixState {
  table: Uint8Array
  pba: Uint8Array
}

/** Bytes per MSI-X table entry (§6.8.2.7). */
export const MSIX_ENTRY_SIZE = 16

/**
 * The MSI-X capability and its table and PBA, which live in a BAR (PCI 3.0 §6.8.2):
 *   +0 ID, next, Message Control (10:0 table size - 1, bit 14 function mask, bit 15 enable);
 *   +4 Table Offset | BIR; +8 PBA Offset | BIR.
 * `mmio` is the BAR-side device: the table at `tableOffset`, the PBA at `pbaOffset`.
 */
export class MsixCapability {
  static readonly SIZE = 12
  /** 16 bytes per vector: address lo, address hi, data, vector control. */
  readonly table: Uint8Array
  private readonly tableView: DataView
  private readonly pba: Uint8Array
  private vectors: (MsiVector | undefined)[]
  /** Vectors whose address/data changed since they were routed. */
  private readonly dirty: boolean[]
  readonly mmio: MmioDevice

  constructor(
    private readonly config: ConfigSpace,
    readonly offset: number,
    readonly count: number,
    readonly bar: number,
    readonly tableOffset: number,
    readonly pbaOffset: number,
    private readonly router: () => MsiRouter,
  ) {
    if (count < 1 || count > 2048) throw new RangeError(`MSI-X: ${count} vectors; expected 1 to 2048`)
    if (tableOffset % 8 !== 0 || pbaOffset % 8 !== 0)
      throw new RangeError('MSI-X: the table and PBA offsets must be 8-byte aligned (§6.8.2.4)')
    this.table = new Uint8Array(count * MSIX_ENTRY_SIZE)
    this.tableView = new DataView(this.table.buffer)
    // Every vector starts masked (§6.8.2.9: Mask Bit "default value of 1").
    for (let v = 0; v < count; v++) this.tableView.setUint32(v * MSIX_ENTRY_SIZE + 12, 1, true)
    this.pba = new Uint8Array(Math.ceil(count / 64) * 8)
    this.vectors = new Array(count).fill(undefined)
    this.dirty = new Array(count).fill(true)
    config.set16(offset + 2, count - 1)
    config.writable(offset + 2, 2, 0xc000)
    config.set32(offset + 4, tableOffset | bar)
    config.set32(offset + 8, pbaOffset | bar)
    this.mmio = {
      read: (off, data) => this.barRead(off, data),
      write: (off, data) => this.barWrite(off, data),
    }
  }

  get enabled(): boolean {
    return (this.config.u16(this.offset + 2) & 0x8000) !== 0
  }
  get functionMasked(): boolean {
    return (this.config.u16(this.offset + 2) & 0x4000) !== 0
  }
  /** Bytes of the table and the PBA, for sizing the BAR they live in. */
  get tableSize(): number {
    return this.table.length
  }
  get pbaSize(): number {
    return this.pba.length
  }
  vectorMasked(v: number): boolean {
    return (this.tableView.getUint32(v * MSIX_ENTRY_SIZE + 12, true) & 1) !== 0
  }
  pending(v: number): boolean {
    return ((this.pba[v >> 3]! >> (v & 7)) & 1) !== 0
  }
  entry(v: number): { address: number; data: number; masked: boolean } {
    const at = v * MSIX_ENTRY_SIZE
    return {
      address: this.tableView.getUint32(at, true) + this.tableView.getUint32(at + 4, true) * 2 ** 32,
      data: this.tableView.getUint32(at + 8, true),
      masked: this.vectorMasked(v),
    }
  }

  /** Fires `vector`; false when MSI-X is off (the caller falls back to MSI or INTx). */
  notify(vector: number): boolean {
    if (!this.enabled) return false
    if (vector >= this.count) return true // no such vector: nothing to send (§6.8.2 table size)
    if (this.functionMasked || this.vectorMasked(vector)) this.setPending(vector, true)
    else this.send(vector)
    return true
  }

  /** Called after any guest write that touched [offset, offset + len) of configuration space. */
  configWritten(offset: number, len: number): void {
    if (overlaps(offset, len, this.offset + 2, 2)) this.deliverPending()
  }

  private setPending(v: number, on: boolean): void {
    if (on) this.pba[v >> 3]! |= 1 << (v & 7)
    else this.pba[v >> 3]! &= ~(1 << (v & 7))
  }

  /** Unmasking a vector with its pending bit set sends it and clears the bit (§6.8.2.9). */
  private deliverPending(): void {
    if (!this.enabled || this.functionMasked) return
    for (let v = 0; v < this.count; v++) {
      if (this.pending(v) && !this.vectorMasked(v)) {
        this.setPending(v, false)
        this.send(v)
      }
    }
  }

  private send(v: number): void {
    let vec = this.vectors[v]
    if (!vec) {
      vec = this.router().allocate()
      this.vectors[v] = vec
    }
    if (this.dirty[v]) {
      const e = this.entry(v)
      vec.update({ address: e.address, data: e.data })
      this.dirty[v] = false
    }
    vec.signal()
  }

  private barRead(off: number, data: Uint8Array): void {
    // Table and PBA accept DWORD and QWORD reads (§6.8.2); narrower ones are answered too.
    const tEnd = this.tableOffset + this.table.length
    const pEnd = this.pbaOffset + this.pba.length
    for (let i = 0; i < data.length; i++) {
      const at = off + i
      if (at >= this.tableOffset && at < tEnd) data[i] = this.table[at - this.tableOffset]!
      else if (at >= this.pbaOffset && at < pEnd) data[i] = this.pba[at - this.pbaOffset]!
      else data[i] = 0
    }
  }

  private barWrite(off: number, data: Uint8Array): void {
    const rel = off - this.tableOffset
    if (rel < 0 || rel >= this.table.length) return // the PBA is read-only (§6.8.2.10)
    for (let i = 0; i < data.length && rel + i < this.table.length; i++) {
      const at = rel + i
      const field = at % MSIX_ENTRY_SIZE
      // Vector Control: only bit 0 (Mask) is defined; the rest is reserved, read as 0.
      if (field >= 12) {
        if (field === 12) this.table[at] = data[i]! & 1
        continue
      }
      // Message Address bits 1:0 are 0 (dword aligned, §6.8.2.5).
      this.table[at] = field === 0 ? data[i]! & 0xfc : data[i]!
      this.dirty[Math.floor(at / MSIX_ENTRY_SIZE)] = true
    }
    this.deliverPending()
  }

  /** For a snapshot of a paused machine: copies of the table and the PBA. */
  saveState(): MsixState {
    return { table: this.table.slice(), pba: this.pba.slice() }
  }

  /**
   * Checks a saved table and PBA as the guest's own writes would be (§6.8.2.5: Message Address
   * bits 1:0 are 0; §6.8.2.9: Vector Control's reserved bits are 0; a pending bit only for a
   * vector the function has) and returns what `restore` applies; throws naming the entry.
   */
  checkState(s: SavedState): MsixState {
    s.only('table', 'pba')
    const table = s.buffer('table', this.table.length)
    const pba = s.buffer('pba', this.pba.length)
    const view = new DataView(table.buffer, table.byteOffset, table.byteLength)
    for (let v = 0; v < this.count; v++) {
      const at = v * MSIX_ENTRY_SIZE
      if (view.getUint32(at, true) & 3) s.refuse('table', `entry ${v}: Message Address bits 1:0 must be 0`)
      if (view.getUint32(at + 12, true) & ~1)
        s.refuse('table', `entry ${v}: Vector Control has reserved bits set`)
    }
    for (let v = this.count; v < pba.length * 8; v++)
      if ((pba[v >> 3]! >> (v & 7)) & 1)
        s.refuse('pba', `pending bit ${v}: the function has ${this.count} vectors`)
    return { table, pba }
  }

  /**
   * Puts a checked state back. The routes are not part of it (the host's GSIs are its own): every
   * vector is released and marked changed, so its first message after the restore routes it from
   * the restored entry (GSI route + irqfd on KVM), as at boot.
   */
  restore(state: MsixState): void {
    for (const v of this.vectors) v?.release()
    this.vectors.fill(undefined)
    this.dirty.fill(true)
    this.table.set(state.table)
    this.pba.set(state.pba)
  }

  reset(): void {
    for (const v of this.vectors) v?.release()
    this.vectors.fill(undefined)
    this.dirty.fill(true)
    this.pba.fill(0)
    for (let v = 0; v < this.count; v++) {
      this.table.fill(0, v * MSIX_ENTRY_SIZE, v * MSIX_ENTRY_SIZE + 12)
      this.tableView.setUint32(v * MSIX_ENTRY_SIZE + 12, 1, true)
    }
  }
}
