import { type CharBackend, OutputBatcher } from './backend.js'

export interface StdioOptions {
  /**
   * Put a terminal stdin in raw mode while the backend is started, so every key reaches the guest
   * as typed (Ctrl-C included); restored at close and, should the process end another way, on exit.
   * The serial console does; virtio-console leaves the terminal as it is.
   */
  raw: boolean
}

/** The VMM's own stdin and stdout (one per machine: the terminal cannot be shared). */
export class StdioCharBackend implements CharBackend {
  readonly terminal = true
  private readonly out = new OutputBatcher((b) => process.stdout.write(b))
  private onData: ((chunk: Buffer) => void) | undefined
  private rawWasSet = false
  private readonly restoreOnExit = () => this.restoreTerminal()

  constructor(private readonly options: StdioOptions = { raw: false }) {}

  write(bytes: Uint8Array): void {
    this.out.push(bytes)
  }

  ready(): Promise<void> {
    return Promise.resolve()
  }

  start(onInput: (bytes: Uint8Array) => void): void {
    const stdin = process.stdin
    if (this.options.raw && stdin.isTTY && !stdin.isRaw) {
      stdin.setRawMode(true)
      this.rawWasSet = true
      process.once('exit', this.restoreOnExit)
    }
    this.onData = (chunk) => onInput(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
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
      this.onData = undefined
    }
    process.stdin.pause()
    this.restoreTerminal()
    process.off('exit', this.restoreOnExit)
  }

  private restoreTerminal(): void {
    if (this.rawWasSet && process.stdin.isTTY) process.stdin.setRawMode(false)
    this.rawWasSet = false
  }
}
