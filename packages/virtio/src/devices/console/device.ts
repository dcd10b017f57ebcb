import type { SavedState } from '@vmm/core'
import { completeChain, type DeviceContext, drainQueue, takeChain, type VirtioDevice } from '../../device.js'
import { gather, scatter } from '../../queue/buffers.js'
import { DeviceType, featureBits } from '../../spec.js'
import type { ConsoleBackend } from './backend.js'

/** Feature bits (§5.3.3). */
export const ConsoleFeature = { SIZE: 0n, MULTIPORT: 1n, EMERG_WRITE: 2n } as const

/** Input held for the guest before the backend is paused (the guest has not posted buffers). */
export const CONSOLE_INPUT_LIMIT = 64 * 1024
const RX = 0
const TX = 1

/**
 * virtio-console with a single port (§5.3; no MULTIPORT): receiveq0 carries host input to the
 * guest (hvc0), transmitq0 the guest's output to the backend. EMERG_WRITE lets an early or
 * panicking guest write one character through configuration space.
 */
export class ConsoleDevice implements VirtioDevice {
  readonly deviceType = DeviceType.CONSOLE
  readonly queueSizes = [64, 64]
  readonly features = featureBits(ConsoleFeature.EMERG_WRITE)
  private context: DeviceContext | undefined
  private readonly input: Uint8Array[] = []
  private inputBytes = 0
  /** The machine is paused: input is held here and the backend is not read. */
  private paused = false

  constructor(private readonly backend: ConsoleBackend) {
    backend.start((bytes) => this.receive(bytes))
  }

  /** A socket back end listens (or fails, naming its path) before the guest runs. */
  ready(): Promise<void> {
    return this.backend.ready()
  }

  /** struct virtio_console_config (§5.3.4): cols, rows, max_nr_ports are 0 without SIZE/MULTIPORT. */
  readConfig(): void {}

  writeConfig(offset: number, data: Uint8Array): void {
    // emerg_wr at offset 8: the low byte is a character (§5.3.4).
    if (offset === 8 && data.length >= 1) this.backend.write(data.slice(0, 1))
  }

  activate(context: DeviceContext): void {
    this.context = context
    this.deliver()
  }

  notify(index: number): void {
    const context = this.context
    if (!context) return
    if (index === RX) this.deliver()
    else if (index === TX)
      drainQueue(context, TX, (chain) => {
        // The backend writes asynchronously, so the bytes are copied out of guest memory.
        const bytes = new Uint8Array(chain.readableLength)
        gather(context.memory, chain.readable, 0, bytes)
        this.backend.write(bytes)
        return 0
      })
  }

  reset(): void {
    this.context = undefined
  }

  /** The machine pauses: host input stops being read; what already arrived is held. */
  pause(): void {
    this.paused = true
    this.backend.pauseInput()
  }

  /** Held input goes to the guest, in order; the backend is read again unless the guest is behind. */
  resume(): void {
    this.paused = false
    this.deliver()
    if (this.inputBytes < CONSOLE_INPUT_LIMIT) this.backend.resumeInput()
  }

  dispose(): void {
    this.backend.close()
  }

  /**
   * For a snapshot: host input that arrived and has not reached the guest yet (at most
   * CONSOLE_INPUT_LIMIT bytes), so a restored guest still gets it. The back end (a socket that
   * listens, stdio) is the restored machine's own; a client connected before is not.
   */
  saveState(): { input: number[] } {
    return { input: [...Buffer.concat(this.input)] }
  }

  restoreState(s: SavedState): void {
    s.only('input')
    const input = Uint8Array.from(s.bytes('input', CONSOLE_INPUT_LIMIT))
    this.input.length = 0
    if (input.length > 0) this.input.push(input)
    this.inputBytes = input.length
  }

  private receive(bytes: Uint8Array): void {
    this.input.push(bytes.slice())
    this.inputBytes += bytes.length
    if (this.inputBytes >= CONSOLE_INPUT_LIMIT) this.backend.pauseInput()
    this.deliver()
  }

  /** Moves held input into the guest's receive buffers while both exist. */
  private deliver(): void {
    const context = this.context
    if (!context || this.paused) return
    while (this.input.length > 0) {
      const chain = takeChain(context, RX)
      if (!chain) return
      let written = 0
      try {
        while (this.input.length > 0 && written < chain.writableLength) {
          const head = this.input[0]!
          const n = scatter(context.memory, chain.writable, written, head)
          written += n
          this.inputBytes -= n
          if (n === head.length) this.input.shift()
          else this.input[0] = head.subarray(n)
        }
      } catch (e) {
        context.fail(e)
        return
      }
      completeChain(context, RX, chain.head, written)
      if (this.inputBytes < CONSOLE_INPUT_LIMIT / 2) this.backend.resumeInput()
    }
  }
}
