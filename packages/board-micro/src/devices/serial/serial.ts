// The serial console component: a 16550A on 8 ports with an IRQ, connected to a console backend.
import {
  type CharBackend,
  type Component,
  type ComponentResources,
  type ComponentType,
  ConfigError,
  ContainerModule,
  inject,
  injectable,
  type MachineControl,
  openCharBackend,
  type PioDevice,
  pathSchema,
  SavedState,
  Tokens,
} from '@vmm/core'
import { Uart16550, type UartState } from './device.js'

export interface SerialConfig {
  /** stdio: the terminal; file: append output to `path`; socket: listen on Unix socket `path`; none: discard. */
  console: 'stdio' | 'file' | 'socket' | 'none'
  path?: string
}

const CTRL_A = 0x01
const PANIC_END = '---[ end Kernel panic'
const POWER_DOWN = 'reboot: Power down'
const HALTED = 'reboot: System halted'

// The panic's exit code is core's now (a guest-panic result); exported here as it was.
export { GUEST_PANIC_EXIT_CODE } from '@vmm/core'

/**
 * A serial port with its console. On the terminal, Ctrl-A x ends the machine (the guest gets every
 * other key, Ctrl-C included) and Ctrl-A Ctrl-A sends one Ctrl-A, as in QEMU.
 */
@injectable()
export class Serial implements PioDevice, Component {
  readonly uart: Uart16550
  /** The UART's first port and its GSI, for firmware tables that describe it (ACPI's COMn). */
  readonly port: number
  readonly irq: number
  private readonly backend: CharBackend | undefined
  private readonly backlog: Uint8Array[] = []
  private escape = false
  private paused = false

  constructor(
    @inject(Tokens.Config) config: SerialConfig,
    @inject(Tokens.Resources) resources: ComponentResources,
    @inject(Tokens.MachineControl) private readonly machine: MachineControl,
    @inject(Tokens.Id) private readonly id: string,
  ) {
    this.backend = makeBackend(config)
    const line = resources.irq('irq')
    this.port = resources.window('port').base
    this.irq = line.irq
    this.uart = new Uart16550(
      line,
      {
        write: (b) => {
          this.backend?.write(b)
          this.watchLine(b)
        },
      },
      () => this.feed(),
    )
  }

  private readonly line = new Uint8Array(160)
  private lineLength = 0

  /**
   * Watches the console for how a Linux guest ends, which a micro VM has no device to report: the
   * last line of a panic report ("---[ end Kernel panic - not syncing: ..."; with panic=N the
   * kernel would then reboot, which would look like a clean reboot) ends the run with its own exit
   * code once the whole report is out, and "reboot: Power down" or "reboot: System halted" end it
   * as a power-off: without a power-off method (no ACPI on this board) the kernel turns the
   * reboot(2) POWER_OFF command into HALT (kernel/reboot.c) and stops its CPUs for good, which is
   * what busybox's `poweroff` gets on a micro VM.
   */
  private watchLine(bytes: Uint8Array): void {
    for (const b of bytes) {
      if (b !== 0x0a) {
        if (this.lineLength < this.line.length) this.line[this.lineLength++] = b
        continue
      }
      if (this.lineLength > 0) {
        // printk's "[   12.345678] " prefix, when the kernel has PRINTK_TIME
        const text = new TextDecoder()
          .decode(this.line.subarray(0, this.lineLength))
          .trimEnd()
          .replace(/^\[\s*\d+\.\d+\]\s*/, '')
        if (text.startsWith(PANIC_END)) this.machine.guestStopped('panic', `guest kernel panic: ${text}`)
        else if (text === POWER_DOWN || text === HALTED)
          this.machine.guestStopped('poweroff', `guest powered off (${text})`)
      }
      this.lineLength = 0
    }
  }

  read(offset: number, data: Uint8Array): void {
    this.uart.read(offset, data)
  }

  write(offset: number, data: Uint8Array): void {
    this.uart.write(offset, data)
  }

  /** Before the guest runs: a socket console that cannot listen fails the start, naming its path. */
  async start(): Promise<void> {
    await this.backend?.ready()
    this.backend?.start((bytes) => this.input(bytes))
  }

  /** Machine.pause: host input is not read, and what already arrived waits here, off the UART. */
  pause(): void {
    this.paused = true
    this.backend?.flush()
    this.backend?.pauseInput()
  }

  /** Held input goes into the UART in order, and the host is read again unless too much waits. */
  resume(): void {
    this.paused = false
    this.feed()
    if (this.waiting() <= 65536) this.backend?.resumeInput()
  }

  stop(): void {
    this.backend?.flush()
  }

  // Snapshottable: the UART's registers and receive FIFO. Host input still waiting in the backlog
  // is not saved: it was typed at this console, and a restored machine (or a clone) has its own.
  quiesce(): void {
    this.backend?.flush()
  }

  saveState(): { uart: UartState } {
    return { uart: this.uart.saveState() }
  }

  restoreState(state: unknown): void {
    const s = new SavedState(this.id, state).only('uart')
    this.uart.restoreState(s.nested('uart'))
  }

  /** Machine.reset: the UART as at power-on (Resettable); the back end stays connected. */
  reset(): void {
    this.uart.reset()
  }

  dispose(): void {
    this.backend?.close()
  }

  /** Host input: escape handling, then into the UART as fast as its FIFO drains. */
  input(bytes: Uint8Array): void {
    const out: number[] = []
    for (const b of bytes) {
      if (this.escape) {
        this.escape = false
        if (b === 0x78 /* x */) {
          this.machine.requestStop('quit from the console (Ctrl-A x)', 0)
          return
        }
        out.push(b === CTRL_A ? CTRL_A : b)
      } else if (b === CTRL_A && this.backend?.terminal) {
        this.escape = true
      } else {
        out.push(b)
      }
    }
    if (out.length === 0) return
    this.backlog.push(Uint8Array.from(out))
    this.feed()
  }

  private feed(): void {
    // Paused: the UART would raise its receive interrupt; the bytes wait in the backlog.
    if (this.paused) return
    while (this.backlog.length > 0 && this.uart.rxSpace > 0) {
      const head = this.backlog[0]!
      const n = this.uart.receive(head)
      if (n === head.length) this.backlog.shift()
      else this.backlog[0] = head.subarray(n)
    }
    // Backpressure: stop reading the host while more than 64 KiB waits for the guest.
    const waiting = this.waiting()
    if (waiting > 65536) this.backend?.pauseInput()
    else if (waiting === 0) this.backend?.resumeInput()
  }

  private waiting(): number {
    return this.backlog.reduce((s, b) => s + b.length, 0)
  }
}

/** The serial console's back end: the terminal in raw mode; a socket keeps 1 MiB for a late client, which replaces an earlier one. */
function makeBackend(config: SerialConfig): CharBackend | undefined {
  if (config.console === 'none') return undefined
  return openCharBackend(config.console, config.path, {
    stdio: { raw: true },
    socket: { keepWhileDisconnected: 1 << 20, secondClient: 'replace', owner: 'serial console socket' },
  })
}

export const serialType: ComponentType<SerialConfig> = {
  name: 'serial',
  description: 'a 16550A UART (8 ports, one IRQ) whose console is the terminal, a file or a Unix socket',
  schema: {
    properties: {
      console: {
        enum: ['stdio', 'file', 'socket', 'none'],
        default: 'stdio',
        description: 'where the console goes',
      },
      path: { ...pathSchema, description: 'the file or Unix socket, for console: file or socket' },
    },
  },
  resources: (config) => {
    if ((config.console === 'file' || config.console === 'socket') && !config.path) {
      throw new ConfigError('path', `console: ${config.console} needs a path`)
    }
    return [
      { kind: 'pio', name: 'port', size: 8 },
      { kind: 'irq', name: 'irq' },
    ]
  },
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).to(Serial)
  }),
}
