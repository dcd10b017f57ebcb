// The host <-> guest agent wire format (agent/proto.h says the same in C). A vsock stream carries
// frames: u32 little-endian payload length, u8 type, payload. Specs for the container's setup
// ('C') and for a process ('S') are runs of records: u8 key, u32 LE length, bytes. Binary and
// flat so that the static C agent needs no JSON parser.

export const FRAME_HEADER = 5
export const FRAME_MAX = 1 << 20

/** Message types, host -> agent and agent -> host. */
export const Msg = {
  setup: 'C',
  spawn: 'S',
  go: 'G',
  stdin: 'I',
  stdinEof: 'i',
  signal: 'K',
  winsize: 'W',
  boot: 'B',
  template: 'T',
  hello: 'H',
  ack: 'A',
  error: 'R',
  stdout: 'O',
  stderr: 'E',
  exit: 'X',
} as const
export type MsgType = (typeof Msg)[keyof typeof Msg]

export interface Frame {
  type: string
  payload: Buffer
}

export function encodeFrame(type: MsgType, payload: Uint8Array | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload
  if (body.length > FRAME_MAX) throw new RangeError(`frame of ${body.length} bytes is over ${FRAME_MAX}`)
  const h = Buffer.alloc(FRAME_HEADER)
  h.writeUInt32LE(body.length, 0)
  h[4] = type.charCodeAt(0)
  return Buffer.concat([h, body])
}

export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n >>> 0)
  return b
}

/** 'B' (agent/boot.c): the host's wall clock (u64 seconds, u32 nanoseconds) and fresh random bytes. */
export const BOOT_ENTROPY = 64

export function bootPayload(nowNs: bigint, entropy: Uint8Array): Buffer {
  if (entropy.length < 32) throw new RangeError(`boot message: ${entropy.length} random bytes, at least 32`)
  const b = Buffer.alloc(12 + entropy.length)
  b.writeBigUInt64LE(nowNs / 1_000_000_000n, 0)
  b.writeUInt32LE(Number(nowNs % 1_000_000_000n), 8)
  b.set(entropy, 12)
  return b
}

/** Splits a byte stream into frames; a frame over FRAME_MAX is an error (the peer is broken). */
export class FrameReader {
  private buffer: Buffer = Buffer.alloc(0)

  push(chunk: Buffer): Frame[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
    const out: Frame[] = []
    while (this.buffer.length >= FRAME_HEADER) {
      const len = this.buffer.readUInt32LE(0)
      if (len > FRAME_MAX) throw new Error(`the agent sent a frame of ${len} bytes (at most ${FRAME_MAX})`)
      if (this.buffer.length < FRAME_HEADER + len) break
      out.push({
        type: String.fromCharCode(this.buffer[4]!),
        payload: this.buffer.subarray(FRAME_HEADER, FRAME_HEADER + len),
      })
      this.buffer = this.buffer.subarray(FRAME_HEADER + len)
    }
    return out
  }
}

/** [key, value] records, encoded for 'C' and 'S'. A value must not contain NUL where C reads it as a string. */
export type Records = readonly (readonly [string, string])[]

export function encodeRecords(records: Records): Buffer {
  const parts: Buffer[] = []
  for (const [key, value] of records) {
    const v = Buffer.from(value)
    const h = Buffer.alloc(5)
    h[0] = key.charCodeAt(0)
    h.writeUInt32LE(v.length, 1)
    parts.push(h, v)
  }
  return Buffer.concat(parts)
}

export function decodeRecords(b: Buffer): [string, string][] {
  const out: [string, string][] = []
  for (let i = 0; i < b.length; ) {
    if (b.length - i < 5) throw new Error('truncated record')
    const len = b.readUInt32LE(i + 1)
    if (len > b.length - i - 5) throw new Error('record longer than its message')
    out.push([String.fromCharCode(b[i]!), b.subarray(i + 5, i + 5 + len).toString()])
    i += 5 + len
  }
  return out
}
