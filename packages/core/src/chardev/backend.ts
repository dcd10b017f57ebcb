// One character back end for every device with a byte stream to the host (the 16550A UART,
// virtio-console): where guest output goes and host input comes from. Output is batched per
// event-loop turn: a UART guest writes one byte per exit, and one write() per byte would cost more
// than the exit itself. The batch grows until it is flushed; flush and close write synchronously
// (file) or hand the bytes to the socket, so nothing the guest wrote before a stop is lost.

import { closeSync, openSync, writeSync } from 'node:fs'
import { errnoWords } from '../component/input-file.js'

export interface CharBackend {
  /** Guest output; the backend copies or owns `bytes` from here on. */
  write(bytes: Uint8Array): void
  /**
   * Settles once the back end can carry bytes: a socket listens. Rejects with an error naming the
   * path (a listen that failed); the device awaits it when it starts, before the guest runs.
   */
  ready(): Promise<void>
  /** Starts handing host input to `onInput` (call once). */
  start(onInput: (bytes: Uint8Array) => void): void
  /** Stops reading host input, without closing: flow control, or a paused machine. */
  pauseInput(): void
  resumeInput(): void
  /** Writes out the batched output now. */
  flush(): void
  close(): void
  /** Whether this is the VMM's own terminal, where a device may offer an escape key (Ctrl-A x). */
  readonly terminal: boolean
}

/** What a manifest says: `stdio` (the terminal), `file` (output appended to `path`), `socket` (listen on `path`). */
export type CharBackendKind = 'stdio' | 'file' | 'socket'

/** Collects output and hands it to `emit` once per event-loop turn (or when 64 KiB piled up). */
export class OutputBatcher {
  private buf = new Uint8Array(4096)
  private len = 0
  private scheduled = false

  constructor(private readonly emit: (bytes: Uint8Array) => void) {}

  push(bytes: Uint8Array): void {
    if (this.len + bytes.length > this.buf.length) {
      const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.len + bytes.length))
      bigger.set(this.buf.subarray(0, this.len))
      this.buf = bigger
    }
    this.buf.set(bytes, this.len)
    this.len += bytes.length
    if (this.len >= 65536) this.flush()
    else if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => this.flush())
    }
  }

  flush(): void {
    this.scheduled = false
    if (this.len === 0) return
    const out = this.buf.slice(0, this.len)
    this.len = 0
    this.emit(out)
  }
}

/** Output appended to a file; no input. */
export class FileCharBackend implements CharBackend {
  readonly terminal = false
  private fd: number
  private readonly out = new OutputBatcher((b) => writeSync(this.fd, b))

  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, 'a')
    } catch (e) {
      // EISDIR, EACCES, ENOENT (a missing directory): the path is what the user has to fix.
      throw new Error(`cannot open the output file ${path}: ${errnoWords(e)}`, { cause: e })
    }
  }

  write(bytes: Uint8Array): void {
    this.out.push(bytes)
  }
  ready(): Promise<void> {
    return Promise.resolve()
  }
  start(): void {}
  pauseInput(): void {}
  resumeInput(): void {}
  flush(): void {
    if (this.fd >= 0) this.out.flush()
  }
  close(): void {
    if (this.fd < 0) return
    this.flush()
    closeSync(this.fd)
    this.fd = -1
  }
}
