import { hex } from '../address.js'

/**
 * Host memory that backs guest RAM, as the hypervisor hands it out: one contiguous host mapping
 * seen from JavaScript as ArrayBuffer chunks of `chunkSize` bytes (the last may be shorter). Node 20
 * cannot make a typed array over more than 2^32 bytes, so RAM above 4 GiB must be chunked; a view
 * that stays inside one chunk is zero-copy, an access straddling chunks is copied piecewise.
 */
export class RamBacking {
  readonly size: number
  readonly chunkSize: number
  private readonly chunks: Uint8Array[]

  constructor(
    buffers: readonly ArrayBuffer[],
    chunkSize: number,
    /** How the provider gives host pages back (RamMapping.discard); absent: discard() writes zeroes. */
    private readonly discarder?: (offset: number, length: number) => boolean,
  ) {
    if (buffers.length === 0) throw new RangeError('RAM backing needs at least one buffer')
    if (!Number.isInteger(chunkSize) || chunkSize <= 0) throw new RangeError(`bad chunk size ${chunkSize}`)
    let size = 0
    buffers.forEach((b, i) => {
      const last = i === buffers.length - 1
      if (last ? b.byteLength > chunkSize || b.byteLength === 0 : b.byteLength !== chunkSize) {
        throw new RangeError(`RAM chunk ${i} is ${hex(b.byteLength)} bytes; chunks are ${hex(chunkSize)}`)
      }
      size += b.byteLength
    })
    this.size = size
    this.chunkSize = chunkSize
    this.chunks = buffers.map((b) => new Uint8Array(b))
  }

  /** A fresh zeroed backing, for tests and the test hypervisor. */
  static allocate(size: number, chunkSize = 1 << 30): RamBacking {
    const buffers: ArrayBuffer[] = []
    for (let at = 0; at < size; at += chunkSize) buffers.push(new ArrayBuffer(Math.min(chunkSize, size - at)))
    return new RamBacking(buffers, chunkSize)
  }

  /**
   * Makes [offset, offset + length) (page-aligned; the caller has bounds-checked) read as zeroes,
   * giving the host pages back where the provider can: true once they read as zeroes, false where
   * the provider only freed them (RamMapping.discard). Without a provider (a backing of plain
   * ArrayBuffers) the bytes are zeroed in place.
   */
  discard(offset: number, length: number): boolean {
    if (this.discarder) return this.discarder(offset, length)
    this.copyIn(offset, new Uint8Array(length))
    return true
  }

  /** A zero-copy view of [offset, offset + length), or undefined where it would straddle chunks. */
  view(offset: number, length: number): Uint8Array | undefined {
    const chunk = Math.floor(offset / this.chunkSize)
    const inChunk = offset - chunk * this.chunkSize
    const bytes = this.chunks[chunk]
    if (bytes === undefined || inChunk + length > bytes.length) return undefined
    return bytes.subarray(inChunk, inChunk + length)
  }

  /** Copies [offset, offset + into.length) into `into`. The caller has bounds-checked. */
  copyOut(offset: number, into: Uint8Array): void {
    this.copy(offset, into, false)
  }

  /** Copies `data` to [offset, offset + data.length). The caller has bounds-checked. */
  copyIn(offset: number, data: Uint8Array): void {
    this.copy(offset, data, true)
  }

  private copy(offset: number, bytes: Uint8Array, toRam: boolean): void {
    let done = 0
    while (done < bytes.length) {
      const at = offset + done
      const chunk = Math.floor(at / this.chunkSize)
      const inChunk = at - chunk * this.chunkSize
      const ram = this.chunks[chunk]!
      const n = Math.min(bytes.length - done, ram.length - inChunk)
      if (toRam) ram.set(bytes.subarray(done, done + n), inChunk)
      else bytes.set(ram.subarray(inChunk, inChunk + n), done)
      done += n
    }
  }
}
