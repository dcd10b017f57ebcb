// Splits a QMP input stream into JSON texts. QEMU's monitor parses a stream, not lines
// (qmp-spec §2.1: "the QMP server reads JSON objects"; json-streamer.c): clients such as go-qemu
// send an object with no newline after it. So the splitter tracks brace depth outside strings
// and cuts where a top-level object or array closes; bytes between texts (whitespace, and the
// control characters a client sends to resynchronise, qmp-spec §2.1.1... "Forcing the JSON
// parser into known-good state") are dropped. A text longer than `limit` bytes is refused.

export type Frame = { readonly kind: 'text'; readonly text: string } | { readonly kind: 'too-long' }

export const DEFAULT_LIMIT = 1 << 20

export class JsonFramer {
  private parts: Buffer[] = []
  private size = 0
  private depth = 0
  private inString = false
  private escaped = false
  /** Inside a bare scalar at top level (`12`, `true`): ends at whitespace or a structural byte. */
  private inScalar = false
  /** Skipping the rest of a text that went over the limit, until depth returns to 0. */
  private discarding = false

  constructor(private readonly limit = DEFAULT_LIMIT) {}

  /** Feeds bytes; returns the texts (and refusals) they complete, in order. */
  push(chunk: Buffer): Frame[] {
    const out: Frame[] = []
    let start = -1
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!
      const idle = this.depth === 0 && !this.inString && !this.inScalar
      if (idle) {
        if (b === 0x7b || b === 0x5b) {
          this.depth = 1
          start = i
        } else if (b === 0x22) {
          this.inString = true
          start = i
        } else if (b > 0x20 && b !== 0x7d && b !== 0x5d && b < 0x7f) {
          this.inScalar = true
          start = i
        } else if (b === 0x7d || b === 0x5d) {
          // A stray closer: its own (malformed) text.
          out.push({ kind: 'text', text: String.fromCharCode(b) })
        }
        continue
      }
      let end = false
      if (this.inString) {
        if (this.escaped) this.escaped = false
        else if (b === 0x5c) this.escaped = true
        else if (b === 0x22) {
          this.inString = false
          if (this.depth === 0) end = true
        }
      } else if (this.inScalar) {
        if (b <= 0x20 || b === 0x7b || b === 0x5b || b === 0x7d || b === 0x5d || b === 0x22 || b === 0x7f) {
          this.inScalar = false
          // The byte that ended the scalar is not part of it; let it be seen again.
          this.append(chunk, start, i, out, true)
          start = -1
          i--
          continue
        }
      } else if (b === 0x22) this.inString = true
      else if (b === 0x7b || b === 0x5b) this.depth++
      else if (b === 0x7d || b === 0x5d) {
        this.depth--
        if (this.depth === 0) end = true
      }
      if (end) {
        this.append(chunk, start === -1 ? 0 : start, i + 1, out, true)
        start = -1
      }
    }
    if (this.depth > 0 || this.inString || this.inScalar)
      this.append(chunk, start === -1 ? 0 : start, chunk.length, out, false)
    return out
  }

  private append(chunk: Buffer, from: number, to: number, out: Frame[], complete: boolean): void {
    if (!this.discarding) {
      this.size += to - from
      if (this.size > this.limit) {
        this.discarding = true
        this.parts = []
        out.push({ kind: 'too-long' })
      } else this.parts.push(complete ? chunk.subarray(from, to) : Buffer.from(chunk.subarray(from, to)))
    }
    if (complete) {
      if (!this.discarding) out.push({ kind: 'text', text: Buffer.concat(this.parts).toString('utf8') })
      this.parts = []
      this.size = 0
      this.discarding = false
    }
  }
}
