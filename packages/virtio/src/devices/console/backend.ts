import { rmSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'

/** Where a console's bytes go and come from. */
export interface ConsoleBackend {
  /** Output from the guest; the backend owns `bytes`. */
  write(bytes: Uint8Array): void
  /** Input for the guest is handed to `onInput` until `close`. */
  listen(onInput: (bytes: Uint8Array) => void): void
  /** Flow control: stop reading input while the guest has no room, and start again. */
  pause(): void
  resume(): void
  close(): void
}

/** The VMM's own stdin/stdout (one per machine: the terminal cannot be shared). */
export class StdioBackend implements ConsoleBackend {
  private handler: ((b: Buffer) => void) | undefined

  write(bytes: Uint8Array): void {
    process.stdout.write(bytes)
  }

  listen(onInput: (bytes: Uint8Array) => void): void {
    this.handler = (b) => onInput(new Uint8Array(b.buffer, b.byteOffset, b.byteLength))
    process.stdin.on('data', this.handler)
  }

  pause(): void {
    process.stdin.pause()
  }

  resume(): void {
    process.stdin.resume()
  }

  close(): void {
    if (this.handler) process.stdin.off('data', this.handler)
    process.stdin.pause()
  }
}

/**
 * A Unix socket the VMM listens on, for one client at a time (like QEMU's `-chardev socket,server`).
 * Output while nobody is connected is dropped, as on a serial line with nothing attached.
 */
export class SocketBackend implements ConsoleBackend {
  private readonly server: Server
  private client: Socket | undefined
  private onInput: ((bytes: Uint8Array) => void) | undefined
  private paused = false

  constructor(private readonly path: string) {
    rmSync(path, { force: true })
    this.server = createServer((socket) => {
      if (this.client) {
        socket.end('console busy\n')
        return
      }
      this.client = socket
      if (this.paused) socket.pause()
      socket.on('data', (b) => this.onInput?.(new Uint8Array(b.buffer, b.byteOffset, b.byteLength)))
      socket.on('close', () => {
        if (this.client === socket) this.client = undefined
      })
      socket.on('error', () => socket.destroy())
    })
    this.server.listen(path)
  }

  write(bytes: Uint8Array): void {
    this.client?.write(bytes)
  }

  listen(onInput: (bytes: Uint8Array) => void): void {
    this.onInput = onInput
  }

  pause(): void {
    this.paused = true
    this.client?.pause()
  }

  resume(): void {
    this.paused = false
    this.client?.resume()
  }

  close(): void {
    this.client?.destroy()
    this.server.close()
    rmSync(this.path, { force: true })
  }
}
