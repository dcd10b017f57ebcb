// The MC146818A CMOS RTC against its datasheet, on a fake host clock: no VM, no real waiting.
import { ConfigError, type InterruptLine } from '@vmm/core'
import { describe, expect, it } from 'vitest'
import {
  A_UIP,
  B_24H,
  B_AIE,
  B_DM_BINARY,
  B_PIE,
  B_SET,
  B_UIE,
  C_AF,
  C_IRQF,
  C_PF,
  C_UF,
  Mc146818,
  periodicIntervalMs,
  REG_A,
  REG_B,
  REG_C,
  REG_CENTURY,
  REG_D,
  type RtcClock,
  rtcStartMs,
} from '../src/index.js'

/** A host clock that moves only when told to, running due timers in order. */
class FakeClock implements RtcClock {
  private timers = new Map<number, { at: number; f: () => void }>()
  private nextId = 1
  constructor(public nowMs: number) {}
  now(): number {
    return this.nowMs
  }
  setTimeout(f: () => void, ms: number): unknown {
    const id = this.nextId++
    this.timers.set(id, { at: this.nowMs + ms, f })
    return id
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number)
  }
  get pending(): number {
    return this.timers.size
  }
  advance(ms: number): void {
    const end = this.nowMs + ms
    for (;;) {
      const due = [...this.timers].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0]
      if (!due) break
      this.timers.delete(due[0])
      this.nowMs = Math.max(this.nowMs, due[1].at)
      due[1].f()
    }
    this.nowMs = end
  }
}

const T0 = Date.UTC(2026, 10, 27, 13, 45, 30, 250) // Friday 27 November 2026, 13:45:30.25 UTC

function rtc(startMs?: number) {
  const clock = new FakeClock(T0)
  const edges: boolean[] = []
  let level = false
  const irq: InterruptLine = {
    irq: 8,
    setLevel(high) {
      level = high
      edges.push(high)
    },
    pulse() {
      throw new Error('the RTC holds its line until register C is read')
    },
  }
  const chip = new Mc146818(irq, startMs, clock)
  const rd = (reg: number) => {
    chip.writeIndex(reg)
    return chip.readData()
  }
  const wr = (reg: number, v: number) => {
    chip.writeIndex(reg)
    chip.writeData(v)
  }
  const time = () => [9, 8, 7, 4, 2, 0].map(rd) // year, month, day, hours, minutes, seconds
  return { chip, clock, rd, wr, time, edges, level: () => level }
}

describe('MC146818A CMOS RTC', () => {
  it('shows the host time in BCD and 24-hour mode by default, with century and day of week', () => {
    const { rd, time } = rtc()
    expect(time()).toEqual([0x26, 0x11, 0x27, 0x13, 0x45, 0x30])
    expect(rd(REG_CENTURY)).toBe(0x20)
    expect(rd(6)).toBe(6) // Friday; 1 is Sunday
    expect(rd(REG_B) & (B_24H | B_DM_BINARY)).toBe(B_24H)
    expect(rd(REG_A) & 0x70).toBe(0x20) // 32.768 kHz time base, running
    expect(rd(REG_D)).toBe(0x80) // valid RAM and time
  })

  it('shows binary values and 12-hour time with the PM bit when register B asks', () => {
    const { rd, wr, time } = rtc()
    wr(REG_B, B_DM_BINARY) // binary, 12-hour
    expect(time()).toEqual([26, 11, 27, 0x80 | 1, 45, 30])
    wr(REG_B, 0) // BCD, 12-hour
    expect(rd(4)).toBe(0x81)
  })

  it('advances with the host clock', () => {
    const { clock, time } = rtc()
    clock.advance(90_000)
    expect(time()).toEqual([0x26, 0x11, 0x27, 0x13, 0x47, 0x00])
  })

  it("takes a time set Linux's way (SET, divider in reset, fields, SET cleared, divider restored)", () => {
    const { clock, rd, wr, time } = rtc()
    wr(REG_B, rd(REG_B) | B_SET)
    const a = rd(REG_A)
    wr(REG_A, a | 0x70)
    for (const [reg, v] of [
      [0, 0x59],
      [2, 0x59],
      [4, 0x23],
      [7, 0x31],
      [8, 0x12],
      [9, 0x99],
      [REG_CENTURY, 0x19],
    ] as const)
      wr(reg, v)
    clock.advance(5000) // stopped: nothing moves while SET is up
    expect(time()).toEqual([0x99, 0x12, 0x31, 0x23, 0x59, 0x59])
    wr(REG_B, rd(REG_B) & ~B_SET)
    wr(REG_A, a)
    clock.advance(1000)
    expect(time()).toEqual([0x00, 0x01, 0x01, 0x00, 0x00, 0x00])
    expect(rd(REG_CENTURY)).toBe(0x20)
    expect(rd(6)).toBe(7) // 1 January 2000 was a Saturday
  })

  it('moves the clock when a single field is written while it runs, keeping the fraction of a second', () => {
    const { clock, wr, time } = rtc()
    wr(2, 0x10) // minutes
    expect(time()).toEqual([0x26, 0x11, 0x27, 0x13, 0x10, 0x30])
    clock.advance(750) // 30.25 + 0.75 s: the next second
    expect(time()[5]).toBe(0x31)
  })

  it('starts from a configured date and keeps running from there', () => {
    const { clock, time } = rtc(Date.UTC(2001, 0, 2, 3, 4, 5))
    clock.advance(2000)
    expect(time()).toEqual([0x01, 0x01, 0x02, 0x03, 0x04, 0x07])
  })

  it('raises UIP only in the 244 µs before an update', () => {
    const { clock, rd } = rtc()
    expect(rd(REG_A) & A_UIP).toBe(0)
    clock.advance(749.8) // 0.2 ms before the second
    expect(rd(REG_A) & A_UIP).toBe(A_UIP)
    clock.advance(0.3)
    expect(rd(REG_A) & A_UIP).toBe(0)
  })

  it('interrupts once a second with UIE: IRQF|UF until register C is read, which lowers the line', () => {
    const { clock, rd, wr, edges, level } = rtc()
    rd(REG_C)
    wr(REG_B, B_24H | B_UIE)
    clock.advance(700)
    expect(edges).toEqual([])
    clock.advance(100) // the second boundary at +750 ms
    expect(level()).toBe(true)
    clock.advance(3000) // no new edge while the line is up
    expect(edges).toEqual([true])
    // PF too: the periodic flag counts at the default 1024 Hz rate whether or not PIE is on.
    expect(rd(REG_C)).toBe(C_IRQF | C_UF | C_PF)
    expect(level()).toBe(false)
    expect(rd(REG_C)).toBe(0) // read clears, and no time has passed
    clock.advance(1000)
    expect(edges).toEqual([true, false, true])
  })

  it('sets UF without an interrupt when UIE is off, and clears UIE when SET is raised', () => {
    const { clock, rd, wr, edges } = rtc()
    wr(REG_A, 0x20) // no periodic rate
    rd(REG_C)
    clock.advance(1000)
    expect(rd(REG_C)).toBe(C_UF)
    wr(REG_B, B_24H | B_UIE | B_SET)
    expect(rd(REG_B) & B_UIE).toBe(0)
    clock.advance(3000)
    expect(edges).toEqual([])
  })

  it('fires the alarm at the matching second only, with "don\'t care" bytes', () => {
    const { clock, rd, wr, edges } = rtc()
    wr(1, 0x33) // 13:45:33
    wr(3, 0x45)
    wr(5, 0xc0) // any hour
    rd(REG_C)
    wr(REG_B, B_24H | B_AIE)
    clock.advance(1800) // 13:45:32.05
    expect(edges).toEqual([])
    clock.advance(1000) // 13:45:33.05
    expect(edges).toEqual([true])
    expect(rd(REG_C) & ~C_PF).toBe(C_IRQF | C_AF | C_UF)
  })

  it('delivers periodic interrupts at the rate register A selects', () => {
    expect(periodicIntervalMs(0)).toBe(0)
    expect(periodicIntervalMs(6)).toBeCloseTo(0.9765625)
    expect(periodicIntervalMs(15)).toBe(500)
    expect(periodicIntervalMs(1)).toBe(periodicIntervalMs(8))
    const { clock, rd, wr, edges } = rtc()
    wr(REG_A, 0x20 | 15) // 2 Hz
    rd(REG_C)
    wr(REG_B, B_24H | B_PIE)
    clock.advance(260) // T0 is 250 ms into a second: the next 500 ms boundary is 250 ms away
    expect(edges).toEqual([true])
    expect(rd(REG_C) & (C_IRQF | C_PF)).toBe(C_IRQF | C_PF)
    clock.advance(500)
    expect(edges).toEqual([true, false, true])
  })

  it('keeps no host timer while no interrupt is enabled or the machine is paused', () => {
    const { chip, clock, wr } = rtc()
    expect(clock.pending).toBe(0)
    wr(REG_B, B_24H | B_UIE)
    expect(clock.pending).toBe(1)
    chip.pause()
    expect(clock.pending).toBe(0)
    chip.resume()
    expect(clock.pending).toBe(1)
    wr(REG_B, B_24H)
    clock.advance(1000) // the timer may fire once more, then stops re-arming
    expect(clock.pending).toBe(0)
  })

  it('keeps CMOS RAM, ignores writes to C and D, and masks the NMI bit of the index', () => {
    const { chip, rd, wr } = rtc()
    wr(0x40, 0xa5)
    expect(rd(0x40)).toBe(0xa5)
    chip.writeIndex(0x80 | 0x40)
    expect(chip.readIndex()).toBe(0x40)
    expect(chip.readData()).toBe(0xa5)
    wr(REG_D, 0)
    expect(rd(REG_D)).toBe(0x80)
  })

  it('survives garbage in every register: every read is a byte and the clock stays a number', () => {
    const { chip, clock, rd, wr } = rtc()
    for (let round = 0; round < 3; round++) {
      for (let reg = 0; reg < 128; reg++) wr(reg, [0xff, 0x00, 0x9a][round]!)
      clock.advance(1234)
      for (let reg = 0; reg < 128; reg++) {
        const v = rd(reg)
        expect(Number.isInteger(v) && v >= 0 && v <= 0xff, `register ${reg} = ${v}`).toBe(true)
      }
      expect(Number.isFinite(chip.timeMs())).toBe(true)
    }
  })
})

describe('cmos-rtc base', () => {
  it('reads utc, localtime and ISO dates, and names a bad value', () => {
    expect(rtcStartMs('utc')).toBeUndefined()
    expect(rtcStartMs('2026-01-01T00:00:00Z')).toBe(Date.UTC(2026, 0, 1))
    const now = Date.UTC(2026, 5, 1)
    expect(rtcStartMs('localtime', now)).toBe(now - new Date(now).getTimezoneOffset() * 60_000)
    expect(() => rtcStartMs('yesterday')).toThrow(ConfigError)
    expect(() => rtcStartMs('2026-13-45')).toThrow(/not utc, localtime or an ISO 8601 date/)
  })
})
