// Snapshottable on the micro board's legacy devices: the state saved mid-conversation, put into a
// fresh device, carries the conversation on (the guest cannot tell), and a saved state that is not
// one (wrong types, out-of-range registers, unknown fields, an over-long FIFO) is refused naming the
// field before anything of it is applied.
import { type InterruptLine, SavedState } from '@vmm/core'
import { describe, expect, it } from 'vitest'
import { readRtcState } from '../src/devices/rtc/state.js'
import { B_24H, B_DM_BINARY, C_UF, I8042Controller, Mc146818, REG_B, REG_C, Uart16550 } from '../src/index.js'

function line() {
  const events: string[] = []
  const irq: InterruptLine = {
    irq: 4,
    setLevel: (high) => events.push(high ? 'high' : 'low'),
    pulse: () => events.push('pulse'),
  }
  return { irq, events }
}

function uart() {
  const l = line()
  const out: number[] = []
  const u = new Uart16550(l.irq, { write: (b) => out.push(...b) })
  const rd = (off: number) => {
    const d = new Uint8Array(1)
    u.read(off, d)
    return d[0]!
  }
  const wr = (off: number, v: number) => u.write(off, Uint8Array.of(v))
  return { u, l, out, rd, wr }
}

/** What a snapshot does to a state: JSON text and back (state.json). */
const throughJson = <T>(v: T): unknown => JSON.parse(JSON.stringify(v))

describe('16550A UART state', () => {
  it('a restored UART has the divisor, line settings, scratch and unread input of the saved one, and its IRQ level', () => {
    const a = uart()
    a.wr(3, 0x80) // DLAB
    a.wr(0, 0x01) // 115200 baud
    a.wr(1, 0x00)
    a.wr(3, 0x03) // 8N1
    a.wr(7, 0x5a) // scratch
    a.wr(1, 0x01) // IER: received data available
    a.u.receive(Uint8Array.from([0x41, 0x42]))
    expect(a.l.events.at(-1)).toBe('high')
    const saved = throughJson(a.u.saveState())

    const b = uart()
    b.u.restoreState(new SavedState('serial0', saved))
    expect(b.l.events).toEqual(['high']) // the line driven to the level the registers imply
    expect(b.rd(7)).toBe(0x5a)
    expect(b.rd(3)).toBe(0x03)
    b.wr(3, 0x80)
    expect(b.rd(0)).toBe(0x01)
    b.wr(3, 0x03)
    expect(b.rd(2) & 0x0f).toBe(0x04) // IIR: received data available
    expect(String.fromCharCode(b.rd(0), b.rd(0))).toBe('AB')
    expect(b.l.events.at(-1)).toBe('low')
    b.wr(0, 0x43)
    expect(b.out).toEqual([0x43])
  })

  it('a quiet UART restores without touching the line', () => {
    const a = uart()
    const b = uart()
    b.u.restoreState(new SavedState('serial0', throughJson(a.u.saveState())))
    expect(b.l.events).toEqual([])
  })

  it.each([
    [{ lcr: 256 }, /serial0: saved state lcr: must be an integer in 0..255, got 256/],
    [{ ier: 0x10 }, /ier: must be an integer in 0..15/],
    [{ fifoEnabled: 1 }, /fifoEnabled: must be true or false, got 1/],
    [{ rx: new Array(17).fill(0) }, /rx: must be a list of at most 16 bytes/],
    [{ rx: [300] }, /rx: must be a list of at most 16 bytes, got \[300\]/],
    [{ extra: 1 }, /extra: unknown field/],
  ])('refuses %j before applying any of it', (change, message) => {
    const a = uart()
    a.wr(7, 0x11)
    const bad = { ...(throughJson(uart().u.saveState()) as object), scr: 0x99, ...change }
    expect(() => a.u.restoreState(new SavedState('serial0', bad))).toThrow(message)
    expect(a.rd(7)).toBe(0x11) // nothing of the bad state applied
  })

  it('refuses a state that is not an object', () => {
    expect(() => uart().u.restoreState(new SavedState('serial0', [1]))).toThrow(
      'serial0: saved state $: must be an object, got [1]',
    )
  })
})

describe('i8042 state', () => {
  it('bytes queued for the guest and the command byte survive, without a second IRQ 1 edge', () => {
    const a = line()
    const c = new I8042Controller(a.irq, () => {})
    c.writeCommand(0x60) // write the command byte...
    c.writeData(0x45) // ...with keyboard interrupts on
    c.keyboard([0x1c, 0xf0, 0x1c])
    expect(c.readData()).toBe(0x1c)
    const saved = throughJson(c.saveState())

    const b = line()
    const d = new I8042Controller(b.irq, () => {})
    d.restoreState(new SavedState('i8042', saved))
    expect(b.events).toEqual([]) // the byte in the buffer was announced before the snapshot
    expect(d.readStatus() & 0x01).toBe(1)
    expect(d.readData()).toBe(0xf0)
    expect(b.events).toEqual(['pulse']) // the next one is announced as usual
    expect(d.readData()).toBe(0x1c)
    d.writeCommand(0x20)
    expect(d.readData()).toBe(0x45)
  })

  it('refuses a bad state naming the field', () => {
    const c = new I8042Controller(line().irq, () => {})
    const good = throughJson(c.saveState()) as object
    expect(() => c.restoreState(new SavedState('i8042', { ...good, ctr: -1 }))).toThrow(
      'i8042: saved state ctr: must be an integer in 0..255, got -1',
    )
    expect(() => c.restoreState(new SavedState('i8042', { ...good, out: 'x' }))).toThrow(
      /out: must be a list/,
    )
  })
})

describe('CMOS RTC state', () => {
  const clock = (at: number) => ({ now: () => at, setTimeout: () => 0, clearTimeout: () => {} })
  const T0 = Date.UTC(2026, 10, 27, 13, 45, 30) // 13:45:30 UTC
  const rw = (c: Mc146818) => ({
    rd: (i: number) => {
      c.writeIndex(i)
      return c.readData()
    },
    wr: (i: number, v: number) => {
      c.writeIndex(i)
      c.writeData(v)
    },
  })

  it('CMOS RAM and the mode come back, and the clock went on while the snapshot sat on disk', () => {
    const a = new Mc146818(line().irq, T0, clock(1_000))
    rw(a).wr(REG_B, B_24H | B_DM_BINARY)
    rw(a).wr(0x30, 0x42)
    const saved = throughJson(a.saveState())
    const b = new Mc146818(line().irq, undefined, clock(1_000 + 65_000)) // restored 65 s later
    b.restoreState(readRtcState(new SavedState('rtc', saved)))
    expect(rw(b).rd(0x30)).toBe(0x42)
    expect(rw(b).rd(REG_B)).toBe(B_24H | B_DM_BINARY)
    expect(rw(b).rd(0x00)).toBe(35) // 13:46:35: binary seconds
    expect(rw(b).rd(0x02)).toBe(46)
    expect(rw(b).rd(0x04)).toBe(13)
    expect(rw(b).rd(REG_C) & C_UF).toBe(C_UF) // updates happened in between
  })

  it('refuses a bad state naming the field', () => {
    const good = throughJson(new Mc146818(line().irq, T0, clock(0)).saveState()) as object
    const read = (v: object) => readRtcState(new SavedState('rtc', v))
    expect(() => read({ ...good, ram: [1, 2] })).toThrow(
      'rtc: saved state ram: must be a list of exactly 128 bytes',
    )
    expect(() => read({ ...good, index: 0x80 })).toThrow('index: must be an integer in 0..127')
    expect(() => read({ ...good, offsetMs: 'soon' })).toThrow('offsetMs: must be a finite number')
    expect(() =>
      read({ ...good, stopped: { sec: 61, min: 0, hour: 0, mday: 1, mon: 1, year: 2026 } }),
    ).toThrow('rtc: stopped: saved state sec: must be an integer in 0..59')
  })
})
