import { createServer, type Server, type Socket } from 'node:net'
import { type CharBackend, OutputBatcher } from './backend.js'
import { listenUnixSocket, type UnixSocketListener } from './unix-socket.js'

export interface SocketOptions {
  /**
   * Output kept while nobody is connected, sent to the next client: at most this many bytes, the
   * oldest dropped first with a note (so a console nobody reads cannot exhaust memory). 0 drops it,
   * as on a serial line with nothing attached.
   */
  keepWhileDisconnected: number
  /** A second client either replaces the first (`replace`) or is told "console busy" (`refuse`). */
  secondClient: 'replace' | 'refuse'
  /** Who listens, for error messages ("serial console socket"). */
  owner?: string
}

/**
 * A Unix socket the VMM listens on (like QEMU's `-chardev socket,server`); one client at a time is
 * the console. Listening goes through listenUnixSocket (a stale socket is replaced, anything else at
 * `path` is an error naming it); `ready` settles when it listens or cannot, and the socket it
 * made is removed at close.
 */
export class SocketCharBackend implements CharBackend {
  readonly terminal = false
  private readonly server: Server
  private client: Socket | undefined
  private pending: Uint8Array[] = []
  private pendingBytes = 0
  private dropped = 0
  private inputPaused = false
  private onInput: ((bytes: Uint8Array) => void) | undefined
  private readonly out = new OutputBatcher((b) => this.emit(b))
  private readonly listening: Promise<void>
  private listener: UnixSocketListener | undefined
  private closed = false

  constructor(
    readonly path: string,
    private readonly options: SocketOptions = { keepWhileDisconnected: 1 << 20, secondClient: 'replace' },
  ) {
    this.server = createServer((socket) => this.attach(socket))
    this.server.unref()
    this.listening = listenUnixSocket(this.server, path, options.owner ?? 'console socket').then((l) => {
      if (this.closed) l.close()
      else this.listener = l
    })
    // Rejections are for whoever awaits ready(); until then a failed listen is not unhandled.
    this.listening.catch(() => {})
  }

  ready(): Promise<void> {
    return this.listening
  }

  private attach(socket: Socket): void {
    if (this.client) {
      if (this.options.secondClient === 'refuse') {
        socket.end('console busy\n')
        return
      }
      this.client.destroy()
    }
    this.client = socket
    if (this.inputPaused) socket.pause()
    if (this.dropped)
      socket.write(
        `\r\n[vmm: ${this.dropped} bytes of console output dropped while nobody was connected]\r\n`,
      )
    for (const b of this.pending) socket.write(b)
    this.pending = []
    this.pendingBytes = 0
    this.dropped = 0
    socket.on('data', (b) => this.onInput?.(new Uint8Array(b.buffer, b.byteOffset, b.byteLength)))
    socket.on('close', () => {
      if (this.client === socket) this.client = undefined
    })
    socket.on('error', () => socket.destroy())
  }

  private emit(bytes: Uint8Array): void {
    if (this.client) {
      this.client.write(bytes)
      return
    }
    const keep = this.options.keepWhileDisconnected
    if (keep === 0) return
    this.pending.push(bytes)
    this.pendingBytes += bytes.length
    while (this.pendingBytes > keep) {
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
    this.inputPaused = true
    this.client?.pause()
  }

  resumeInput(): void {
    this.inputPaused = false
    this.client?.resume()
  }

  flush(): void {
    this.out.flush()
  }

  close(): void {
    this.flush()
    this.client?.end()
    this.closed = true
    this.listener?.close()
  }
}
