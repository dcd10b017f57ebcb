// The System Description Table header (ACPI 6.5 §5.2.6) and checksum every table shares, and the
// little-endian writer the tables are built with.

export const HEADER_SIZE = 36

export function checksum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let sum = 0
  for (let i = start; i < end; i++) sum = (sum + bytes[i]!) & 0xff
  return (0x100 - sum) & 0xff
}

/** Little-endian writer over a growing byte array. */
export class Writer {
  private buf = new Uint8Array(256)
  length = 0
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n))
    next.set(this.buf)
    this.buf = next
  }
  u8(v: number): this {
    this.ensure(1)
    this.buf[this.length++] = v & 0xff
    return this
  }
  u16(v: number): this {
    return this.u8(v).u8(v >>> 8)
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(Math.floor(v / 0x10000) & 0xffff)
  }
  u64(v: number): this {
    return this.u32(v % 2 ** 32).u32(Math.floor(v / 2 ** 32))
  }
  ascii(s: string, n: number): this {
    for (let i = 0; i < n; i++) this.u8(i < s.length ? s.charCodeAt(i) : 0x20)
    return this
  }
  bytes(b: Uint8Array): this {
    this.ensure(b.length)
    this.buf.set(b, this.length)
    this.length += b.length
    return this
  }
  zeros(n: number): this {
    this.ensure(n)
    this.length += n
    return this
  }
  /** Generic Address Structure (§5.2.3.2): System I/O, byte access. */
  gasIo(port: number, bits = 8): this {
    return this.u8(1).u8(bits).u8(0).u8(1).u64(port)
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.length)
  }
}

export interface Oem {
  readonly oemId: string
  readonly oemTableId: string
}

/** A table with its System Description Table Header (§5.2.6); length and checksum filled in. */
export function table(signature: string, revision: number, oem: Oem, body: Uint8Array): Uint8Array {
  const w = new Writer()
    .ascii(signature, 4)
    .u32(HEADER_SIZE + body.length)
    .u8(revision)
    .u8(0)
    .ascii(oem.oemId, 6)
    .ascii(oem.oemTableId, 8)
    .u32(1) // OEM revision
    .ascii('VMM ', 4) // creator ID
    .u32(1) // creator revision
    .bytes(body)
  const out = w.done()
  out[9] = checksum(out)
  return out
}
