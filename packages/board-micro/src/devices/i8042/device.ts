// The i8042 keyboard controller, as much of it as a micro VM needs: the reset line (how Linux
// reboots with reboot=k) and a keyboard that can deliver Ctrl-Alt-Del or the Power key from the
// host. Ports 0x60 (data) and 0x64 (status/command); command set from the IBM PS/2 Technical
// Reference (8042 "Keyboard Controller" commands) and the scancodes of set 2.
import type { InterruptLine, SavedState } from '@vmm/core'

const STATUS_OBF = 0x01 // output buffer full: data for the host at 0x60
const STATUS_SYS = 0x04 // system flag: self-test passed
const STATUS_CMD = 0x08 // the last write was to 0x64

const CMD_READ_CTR = 0x20
const CMD_WRITE_CTR = 0x60
const CMD_SELF_TEST = 0xaa
const CMD_KBD_TEST = 0xab
const CMD_KBD_DISABLE = 0xad
const CMD_KBD_ENABLE = 0xae
const CMD_READ_OUTPORT = 0xd0
const CMD_WRITE_OUTPORT = 0xd1
const CMD_PULSE_RESET = 0xfe

const CTR_KBD_INT = 0x01 // raise IRQ 1 when keyboard data arrives

const KBD_ACK = 0xfa

/** Ctrl-Alt-Del in scancode set 2, press then release (what Firecracker's SendCtrlAltDel sends). */
export const CTRL_ALT_DEL = [0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14]
/** The ACPI "Power" key of a PC keyboard in scancode set 2 (E0 37), press then release: Linux's atkbd reports KEY_POWER. */
export const POWER_KEY = [0xe0, 0x37, 0xe0, 0xf0, 0x37]

/** The controller's registers and the bytes queued for the guest, for a snapshot. */
export interface I8042State {
  status: number
  ctr: number
  pendingCommand: number
  out: number[]
  outport: number
}

/** More queued bytes than this in a saved state is not a keyboard's (a snapshot of something else). */
const MAX_SAVED_OUT = 1024

export class I8042Controller {
  private status = STATUS_SYS
  private ctr = CTR_KBD_INT | 0x04 // keyboard interrupt on, system flag
  private pendingCommand = 0
  private readonly out: number[] = []
  private outport = 0x01 // bit 0 high: not in reset

  constructor(
    private readonly irq: InterruptLine,
    private readonly onReset: () => void,
  ) {}

  /** Queues keyboard bytes (scancodes) for the guest, each announced by IRQ 1. */
  /** While held (the machine is paused) keyboard bytes queue up and IRQ 1 stays quiet. */
  private held = false

  hold(held: boolean): void {
    this.held = held
    this.refill()
  }

  keyboard(bytes: readonly number[]): void {
    this.out.push(...bytes)
    this.refill()
  }

  saveState(): I8042State {
    const { status, ctr, pendingCommand, outport } = this
    return { status, ctr, pendingCommand, out: [...this.out], outport }
  }

  /**
   * Puts a saved state back (checked first). No interrupt is raised: a byte already in the
   * output buffer was announced before the snapshot, and that edge is in the irqchip's state.
   */
  restoreState(s: SavedState): void {
    s.only('status', 'ctr', 'pendingCommand', 'out', 'outport')
    const v = {
      status: s.u8('status'),
      ctr: s.u8('ctr'),
      pendingCommand: s.u8('pendingCommand'),
      out: s.bytes('out', MAX_SAVED_OUT),
      outport: s.u8('outport'),
    }
    this.status = v.status
    this.ctr = v.ctr
    this.pendingCommand = v.pendingCommand
    this.outport = v.outport
    this.out.length = 0
    this.out.push(...v.out)
  }

  readData(): number {
    const v = this.out.shift()
    this.status &= ~STATUS_OBF
    this.refill()
    return v ?? 0
  }

  readStatus(): number {
    return this.status
  }

  writeCommand(cmd: number): void {
    this.status |= STATUS_CMD
    switch (cmd) {
      case CMD_READ_CTR:
        this.reply(this.ctr)
        return
      case CMD_WRITE_CTR:
      case CMD_WRITE_OUTPORT:
        this.pendingCommand = cmd
        return
      case CMD_SELF_TEST:
        this.reply(0x55)
        return
      case CMD_KBD_TEST:
        this.reply(0x00)
        return
      case CMD_READ_OUTPORT:
        this.reply(this.outport)
        return
      case CMD_KBD_DISABLE:
      case CMD_KBD_ENABLE:
        return
      case CMD_PULSE_RESET:
        this.onReset()
        return
      default:
        // 0xF0-0xFF pulse output port bits low for 6 µs; bit 0 is the CPU reset line.
        if (cmd >= 0xf0 && (cmd & 0x01) === 0) this.onReset()
    }
  }

  writeData(v: number): void {
    this.status &= ~STATUS_CMD
    const pending = this.pendingCommand
    this.pendingCommand = 0
    if (pending === CMD_WRITE_CTR) {
      this.ctr = v
      return
    }
    if (pending === CMD_WRITE_OUTPORT) {
      this.outport = v
      if ((v & 0x01) === 0) this.onReset() // the reset line driven low
      return
    }
    // A keyboard command: acknowledge it (the keyboard behind this controller has no state the
    // guest needs; Linux's atkbd probing gets the answers it expects for reset and identify).
    if (v === 0xff) this.keyboard([KBD_ACK, 0xaa])
    else if (v === 0xf2) this.keyboard([KBD_ACK, 0xab, 0x83])
    else this.keyboard([KBD_ACK])
  }

  private reply(v: number): void {
    this.out.unshift(v)
    this.status &= ~STATUS_OBF
    this.refill()
  }

  /** Puts the next byte in the output buffer and pulses IRQ 1 for it (the 8042 IRQ is edge-triggered). */
  private refill(): void {
    if (this.held || this.status & STATUS_OBF || this.out.length === 0) return
    this.status |= STATUS_OBF
    if (this.ctr & CTR_KBD_INT) this.irq.pulse()
  }
}
