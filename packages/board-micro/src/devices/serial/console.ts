// Where a serial console's bytes go and come from: the terminal (raw mode while the machine runs),
// a file, or a Unix socket. Output is batched per event-loop turn: the guest writes one byte per
// exit, and one write() per byte would cost more than the exit itself. Nothing is dropped: the
// batch grows until it is flushed, and stop/dispose flush synchronously.
import { closeSync, openSync, writeSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'

export interface ConsoleBackend {
  /** Guest output. */
  write(bytes: Uint8Array): void
  /** Starts delivering host input to `onInput`. */
  start(onInput: (bytes: Uint8Array) => void): void
  /** Stops input (e.g. while paused) without closing. */
  pauseInput(): void
  resumeInput(): void
  flush(): void
  close(): void
}

/** Collects output and hands it to `emit` once per event-loop turn (or when 64 KiB piled up). */
class Batcher {
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

/** The controlling terminal: stdout for output, stdin in raw mode for input. */
export class StdioConsole implements ConsoleBackend {
  private readonly out = new Batcher((b) => process.stdout.write(b))
  private onData: ((chunk: Buffer) => void) | undefined
  private rawWasSet = false
  private readonly restoreOnExit = () => this.restoreTerminal()

  write(bytes: Uint8Array): void {
    this.out.push(bytes)
  }

  start(onInput: (bytes: Uint8Array) => void): void {
    const stdin = process.stdin
    if (stdin.isTTY && !stdin.isRaw) {
      // Raw mode: keys go to the guest as typed (Ctrl-C included). The terminal is restored at
      // stop and, should the process die another way, on exit.
      stdin.setRawMode(true)
      this.rawWasSet = true
      process.once('exit', this.restoreOnExit)
    }
    this.onData = (chunk) => onInput(chunk)
    stdin.on('data', this.onData)
    stdin.resume()
  }

  pauseInput(): void {
    process.stdin.pause()
  }

  resumeInput(): void {
    if (this.onData) process.stdin.resume()
  }

  flush(): void {
    this.out.flush()
  }

  close(): void {
    this.flush()
    if (this.onData) {
      process.stdin.off('data', this.onData)
      process.stdin.pause()
      this.onData = undefined
    }
    this.restoreTerminal()
    process.off('exit', this.restoreOnExit)
  }

  private restoreTerminal(): void {
    if (this.rawWasSet && process.stdin.isTTY) process.stdin.setRawMode(false)
    this.rawWasSet = false
  }
}

/** Output appended to a file; no input. */
export class FileConsole implements ConsoleBackend {
  private fd: number
  private readonly out = new Batcher((b) => writeSync(this.fd, b))

  constructor(path: string) {
    this.fd = openSync(path, 'a')
  }
  write(bytes: Uint8Array): void {
    this.out.push(bytes)
  }
  start(): void {}
  pauseInput(): void {}
  resumeInput(): void {}
  flush(): void {
    this.out.flush()
  }
  close(): void {
    if (this.fd < 0) return
    this.flush()
    closeSync(this.fd)
    this.fd = -1
  }
}

/**
 * A Unix socket the VMM listens on: one client at a time is the console (output while nobody is
 * connected is kept and sent when someone connects, up to 1 MiB, then the oldest is dropped with
 * a note, so a console nobody reads cannot exhaust memory).
 */
export class SocketConsole implements ConsoleBackend {
  private readonly server: Server
  private client: Socket | undefined
  private pending: Uint8Array[] = []
  private pendingBytes = 0
  private dropped = 0
  private onInput: ((bytes: Uint8Array) => void) | undefined
  private readonly out = new Batcher((b) => this.emit(b))

  constructor(readonly path: string) {
    this.server = createServer((sock) => this.attach(sock))
    this.server.listen(path)
    this.server.unref()
  }

  private attach(sock: Socket): void {
    this.client?.destroy()
    this.client = sock
    if (this.dropped)
      sock.write(`\r\n[vmm: ${this.dropped} bytes of console output dropped while nobody was connected]\r\n`)
    for (const b of this.pending) sock.write(b)
    this.pending = []
    this.pendingBytes = 0
    this.dropped = 0
    sock.on('data', (d) => this.onInput?.(d))
    sock.on('close', () => {
      if (this.client === sock) this.client = undefined
    })
    sock.on('error', () => sock.destroy())
  }

  private emit(bytes: Uint8Array): void {
    if (this.client) {
      this.client.write(bytes)
      return
    }
    this.pending.push(bytes)
    this.pendingBytes += bytes.length
    while (this.pendingBytes > 1 << 20) {
      const old = this.pending.shift()!
      this.pendingBytes -= old.length
      this.dropped += old.length
    }
  }

  write(bytes: Uint8Array): void {
    this.out.push(bytes)
  }
  start(onInput: (bytes: Uint8Array) => void): void {
    this.onInput = onInput
  }
  pauseInput(): void {
    this.client?.pause()
  }
  resumeInput(): void {
    this.client?.resume()
  }
  flush(): void {
    this.out.flush()
  }
  close(): void {
    this.flush()
    this.client?.end()
    this.server.close()
  }
}
