// A 16550A UART as the guest sees it through 8 I/O ports. Register semantics from the National
// Semiconductor PC16550D datasheet (Table II "Summary of Registers", §8.4-8.9); behaviour Linux's
// 8250 driver relies on (autoconfig probes the scratch register, the FIFO bits of IIR, loopback).
import type { InterruptLine, PioDevice, SavedState } from '@vmm/core'

// register offsets
const RBR_THR_DLL = 0
const IER_DLM = 1
const IIR_FCR = 2
const LCR = 3
const MCR = 4
const LSR = 5
const MSR = 6
const SCR = 7

const IER_RDA = 0x01 // received data available
const IER_THRE = 0x02 // transmitter holding register empty
const IER_RLS = 0x04 // receiver line status
const IER_MS = 0x08 // modem status
const IER_MASK = 0x0f

const IIR_NONE = 0x01
const IIR_MS = 0x00
const IIR_THRE = 0x02
const IIR_RDA = 0x04
const IIR_RLS = 0x06
const IIR_FIFO_ENABLED = 0xc0

const FCR_ENABLE = 0x01
const FCR_CLEAR_RX = 0x02

const LCR_DLAB = 0x80

const MCR_DTR = 0x01
const MCR_RTS = 0x02
const MCR_OUT1 = 0x04
const MCR_OUT2 = 0x08
const MCR_LOOP = 0x10
const MCR_MASK = 0x1f

const LSR_DR = 0x01
const LSR_OE = 0x02
const LSR_THRE = 0x20
const LSR_TEMT = 0x40

const MSR_CTS = 0x10
const MSR_DSR = 0x20
const MSR_RI = 0x40
const MSR_DCD = 0x80
const MSR_DELTA_MASK = 0x0f

/** The 16550A's receive FIFO depth; more pending input waits on the host side (backpressure). */
export const RX_FIFO_SIZE = 16

export interface UartSink {
  /** Guest output, one call per transmitted byte run (never split or dropped). */
  write(bytes: Uint8Array): void
}

/** The UART's registers and receive FIFO, for a snapshot (plain data). */
export interface UartState {
  ier: number
  lcr: number
  mcr: number
  lsr: number
  msr: number
  scr: number
  dll: number
  dlm: number
  fifoEnabled: boolean
  threPending: boolean
  rx: number[]
}

export class Uart16550 implements PioDevice {
  // The registers; powerOn() gives them their reset values.
  private ier!: number
  private lcr!: number
  private mcr!: number
  private lsr!: number
  private msr!: number
  private scr!: number
  private dll!: number
  private dlm!: number
  private fifoEnabled!: boolean
  private threPending!: boolean
  private readonly rx: number[] = []
  private irqLevel = false
  private readonly txByte = new Uint8Array(1)

  constructor(
    private readonly irq: InterruptLine,
    private readonly sink: UartSink,
    /** Called when the guest drained the receive FIFO, so the host may send more. */
    private readonly onRxSpace: () => void = () => {},
  ) {
    this.powerOn()
  }

  private powerOn(): void {
    this.ier = 0
    this.lcr = 0x03 // 8N1, the reset value Linux expects before it programs the line
    this.mcr = MCR_OUT2
    this.lsr = LSR_THRE | LSR_TEMT
    this.msr = MSR_DCD | MSR_DSR | MSR_CTS // a connected, ready peer
    this.scr = 0
    this.dll = 0x0c // 9600 baud at 1.8432 MHz
    this.dlm = 0
    this.fifoEnabled = false
    this.threPending = true // THR is empty and nobody has read the THRE interrupt yet
    this.rx.length = 0
  }

  /**
   * The machine's reset line (Machine.reset): the registers as at power-on (the 16550's MR pin
   * clears IER, IIR, LCR, MCR, LSR but THRE/TEMT; PC16550D datasheet, "Master Reset"), the FIFO
   * emptied, the line lowered. Without it the first boot's IER stayed, and the next boot's
   * console output or input raised IRQ 4 before the guest had set up its interrupt controllers
   * (on the standard board the 8259s stay at vector base 0: vector 4 is #OF).
   */
  reset(): void {
    this.powerOn()
    this.update()
    this.onRxSpace()
  }

  /** Room in the receive FIFO: how many bytes receive() accepts now. */
  get rxSpace(): number {
    return RX_FIFO_SIZE - this.rx.length
  }

  /** Host input for the guest; returns how many bytes fitted (the rest must be offered again). */
  receive(bytes: Uint8Array): number {
    if (this.mcr & MCR_LOOP) return bytes.length // the receiver hears only itself in loopback
    const n = Math.min(bytes.length, this.rxSpace)
    for (let i = 0; i < n; i++) this.rx.push(bytes[i]!)
    if (n > 0) {
      this.lsr |= LSR_DR
      this.update()
    }
    return n
  }

  saveState(): UartState {
    const { ier, lcr, mcr, lsr, msr, scr, dll, dlm, fifoEnabled, threPending } = this
    return { ier, lcr, mcr, lsr, msr, scr, dll, dlm, fifoEnabled, threPending, rx: [...this.rx] }
  }

  /**
   * Puts saved registers back (checked first: the state is untrusted) and drives the IRQ line to
   * the level they imply. The irqchip's own state is restored before the devices; asserting a line
   * it already holds raised does not deliver the interrupt twice (KVM's IOAPIC skips a pin whose
   * level interrupt is unacknowledged, its PIC and edge pins an unchanged level), but it gives the
   * hypervisor the source's level, so the guest's next acknowledgement lowers it.
   */
  restoreState(s: SavedState): void {
    s.only('ier', 'lcr', 'mcr', 'lsr', 'msr', 'scr', 'dll', 'dlm', 'fifoEnabled', 'threPending', 'rx')
    const { rx, ...registers } = {
      ier: s.int('ier', 0, IER_MASK),
      lcr: s.u8('lcr'),
      mcr: s.int('mcr', 0, MCR_MASK),
      lsr: s.u8('lsr'),
      msr: s.u8('msr'),
      scr: s.u8('scr'),
      dll: s.u8('dll'),
      dlm: s.u8('dlm'),
      fifoEnabled: s.bool('fifoEnabled'),
      threPending: s.bool('threPending'),
      rx: s.bytes('rx', RX_FIFO_SIZE),
    }
    Object.assign(this, registers)
    this.rx.length = 0
    this.rx.push(...rx)
    this.irqLevel = false
    if (this.interruptId() !== IIR_NONE) this.update()
  }

  read(offset: number, data: Uint8Array): void {
    data.fill(0)
    data[0] = this.readRegister(offset)
  }

  write(offset: number, data: Uint8Array): void {
    this.writeRegister(offset, data[0]!)
  }

  private readRegister(offset: number): number {
    switch (offset) {
      case RBR_THR_DLL: {
        if (this.lcr & LCR_DLAB) return this.dll
        const byte = this.rx.shift() ?? 0
        if (this.rx.length === 0) {
          this.lsr &= ~LSR_DR
          this.onRxSpace()
        }
        this.update()
        return byte
      }
      case IER_DLM:
        return this.lcr & LCR_DLAB ? this.dlm : this.ier
      case IIR_FCR: {
        const id = this.interruptId()
        // Reading IIR while it reports THRE is how the driver acknowledges that interrupt (§8.6).
        if (id === IIR_THRE) {
          this.threPending = false
          this.update()
        }
        return id | (this.fifoEnabled ? IIR_FIFO_ENABLED : 0)
      }
      case LCR:
        return this.lcr
      case MCR:
        return this.mcr
      case LSR: {
        const v = this.lsr
        this.lsr &= ~LSR_OE // overrun is cleared by reading LSR
        return v
      }
      case MSR: {
        const v = this.mcr & MCR_LOOP ? this.loopbackMsr() : this.msr
        this.msr &= ~MSR_DELTA_MASK
        return v
      }
      case SCR:
        return this.scr
      default:
        return 0xff
    }
  }

  private writeRegister(offset: number, v: number): void {
    switch (offset) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) {
          this.dll = v
          return
        }
        this.transmit(v)
        return
      case IER_DLM:
        if (this.lcr & LCR_DLAB) {
          this.dlm = v
          return
        }
        // Enabling THRE while THR is empty raises the interrupt at once (what Linux's
        // serial8250_start_tx relies on).
        if (!(this.ier & IER_THRE) && v & IER_THRE && this.lsr & LSR_THRE) this.threPending = true
        this.ier = v & IER_MASK
        this.update()
        return
      case IIR_FCR:
        this.fifoEnabled = (v & FCR_ENABLE) !== 0
        if (v & FCR_CLEAR_RX) {
          this.rx.length = 0
          this.lsr &= ~LSR_DR
          this.onRxSpace()
        }
        this.update()
        return
      case LCR:
        this.lcr = v
        return
      case MCR:
        this.mcr = v & MCR_MASK
        this.update()
        return
      case SCR:
        this.scr = v
        return
      default:
        return // LSR and MSR are read-only
    }
  }

  private transmit(byte: number): void {
    if (this.mcr & MCR_LOOP) {
      // Loopback (§8.5, MCR bit 4): the byte comes back on the receiver.
      if (this.rx.length < RX_FIFO_SIZE) this.rx.push(byte)
      else this.lsr |= LSR_OE
      this.lsr |= LSR_DR
    } else {
      this.txByte[0] = byte
      this.sink.write(this.txByte)
    }
    // The byte leaves at once: THR is empty again and, if enabled, says so with an interrupt.
    this.lsr |= LSR_THRE | LSR_TEMT
    this.threPending = true
    this.update()
  }

  private loopbackMsr(): number {
    // In loopback the modem outputs drive the inputs: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
    return (
      (this.mcr & MCR_DTR ? MSR_DSR : 0) |
      (this.mcr & MCR_RTS ? MSR_CTS : 0) |
      (this.mcr & MCR_OUT1 ? MSR_RI : 0) |
      (this.mcr & MCR_OUT2 ? MSR_DCD : 0)
    )
  }

  /** The highest-priority pending interrupt (§8.6, Table IV), or IIR_NONE. */
  private interruptId(): number {
    if (this.ier & IER_RLS && this.lsr & LSR_OE) return IIR_RLS
    if (this.ier & IER_RDA && this.lsr & LSR_DR) return IIR_RDA
    if (this.ier & IER_THRE && this.threPending && this.lsr & LSR_THRE) return IIR_THRE
    if (this.ier & IER_MS && this.msr & MSR_DELTA_MASK) return IIR_MS
    return IIR_NONE
  }

  /** Drives the IRQ line to "an interrupt is pending", touching it only when that changes. */
  private update(): void {
    const level = this.interruptId() !== IIR_NONE
    if (level !== this.irqLevel) {
      this.irqLevel = level
      this.irq.setLevel(level)
    }
  }
}
