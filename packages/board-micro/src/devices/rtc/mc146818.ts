// The PC's CMOS real-time clock, a Motorola MC146818A: ports 0x70 (index) and 0x71 (data),
// ISA IRQ 8. Register map and bit meanings from the MC146818A datasheet ("Address Map",
// "Register A".."Register D") as the Intel PCH datasheets keep them for the PC's RTC:
//   0x00 seconds  0x01 seconds alarm  0x02 minutes  0x03 minutes alarm  0x04 hours  0x05 hours alarm
//   0x06 day of week (1 = Sunday)  0x07 day of month  0x08 month  0x09 year (00-99)
//   0x0A register A: UIP (7, read-only), divider DV (6:4, 010 = 32.768 kHz running), rate RS (3:0)
//   0x0B register B: SET (7), PIE (6), AIE (5), UIE (4), SQWE (3), DM binary (2), 24/12 (1), DSE (0)
//   0x0C register C (read-only, cleared by reading): IRQF (7), PF (6), AF (5), UF (4)
//   0x0D register D: VRT (7), the battery is good
//   0x0E-0x7F: battery-backed RAM; 0x32 is the century (the FADT's CENTURY field points at it).
//
// The clock is the host's wall clock plus an offset the guest moves by setting the time, so it
// keeps running while the machine is paused, as a battery-backed clock would. Flags are brought up
// to date from elapsed time whenever the guest looks (a lazy counter), and a host timer runs only
// while an interrupt is enabled, to raise IRQ 8 on time.

import type { InterruptLine } from '@vmm/core'

const REG_SECONDS = 0x00
const REG_SECONDS_ALARM = 0x01
const REG_MINUTES = 0x02
const REG_MINUTES_ALARM = 0x03
const REG_HOURS = 0x04
const REG_HOURS_ALARM = 0x05
const REG_DAY_OF_WEEK = 0x06
const REG_DAY_OF_MONTH = 0x07
const REG_MONTH = 0x08
const REG_YEAR = 0x09
export const REG_A = 0x0a
export const REG_B = 0x0b
export const REG_C = 0x0c
export const REG_D = 0x0d
/** The century byte, where the IBM PC/AT BIOS keeps it (the FADT's CENTURY names this index). */
export const REG_CENTURY = 0x32

export const A_UIP = 0x80
const A_DV_MASK = 0x70
/** DV = 010: the 32.768 kHz time base, dividers running. 11x holds the divider chain in reset. */
const A_DV_RUNNING = 0x20
const A_RS_MASK = 0x0f

export const B_SET = 0x80
export const B_PIE = 0x40
export const B_AIE = 0x20
export const B_UIE = 0x10
export const B_DM_BINARY = 0x04
export const B_24H = 0x02

export const C_IRQF = 0x80
export const C_PF = 0x40
export const C_AF = 0x20
export const C_UF = 0x10

const D_VRT = 0x80
/** Alarm bytes with both top bits set match every value ("don't care"). */
const ALARM_ANY = 0xc0
/** The update cycle takes 1984 µs and UIP rises 244 µs before it (datasheet "Update Cycle"). */
const UIP_LEAD_MS = 0.244
/** Node timers cannot wake faster than this; faster periodic rates coalesce (PF is a flag, not a count). */
const MIN_TIMER_MS = 1

/** The broken-down time the registers show, in UTC fields of the guest's clock. */
interface Fields {
  sec: number
  min: number
  hour: number
  mday: number
  /** 1-12. */
  mon: number
  /** The full year: century register x 100 + year register. */
  year: number
}

/** The host clock and timers the RTC runs on (Date.now and setTimeout; tests pass fakes). */
export interface RtcClock {
  now(): number
  setTimeout(f: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

export const hostClock: RtcClock = {
  now: () => Date.now(),
  setTimeout: (f, ms) => {
    const t = setTimeout(f, ms)
    t.unref() // a guest with a pending RTC alarm must not keep a finished vmm alive
    return t
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
}

/** The periodic interrupt period for a rate select value, in ms, or 0 when off (datasheet table 5). */
export function periodicIntervalMs(rs: number): number {
  if (rs === 0) return 0
  // RS 1 and 2 repeat RS 8 and 9 on a 32.768 kHz time base; RS n >= 3 divides by 2^(n-1).
  const n = rs <= 2 ? rs + 7 : rs
  return (2 ** (n - 1) / 32768) * 1000
}

export class Mc146818 {
  private index = 0
  /** Battery-backed RAM and the alarm bytes; the time registers are computed, not stored. */
  private readonly ram = new Uint8Array(128)
  private regA = A_DV_RUNNING | 0x06 // 1024 Hz periodic rate: what the PC BIOS leaves
  private regB = B_24H
  private flags = 0
  /** Guest clock minus host clock, ms. */
  private offsetMs: number
  /**
   * The fields shown while the clock is stopped (SET, or the divider chain held in reset), as the
   * guest wrote them: a guest sets them one at a time, so a 31st written before its month must
   * not roll over yet.
   */
  private stopped: Fields | undefined
  /** Guest-clock ms up to which the flags are up to date. */
  private flagsAt: number
  private timer: unknown
  private paused = false

  /**
   * @param startMs the guest clock's time at power-on (ms since the epoch, UTC fields); the
   *   host's time when absent
   */
  constructor(
    private readonly irq: InterruptLine,
    startMs?: number,
    private readonly clock: RtcClock = hostClock,
  ) {
    const now = clock.now()
    this.offsetMs = startMs === undefined ? 0 : startMs - now
    this.flagsAt = now + this.offsetMs
  }

  /** The guest clock now, ms since the epoch. */
  timeMs(): number {
    return this.stopped ? msOf(this.stopped) : this.clock.now() + this.offsetMs
  }

  private shownFields(): Fields {
    return this.stopped ? { ...this.stopped } : fieldsOf(this.timeMs())
  }

  /** Port 0x70: bit 7 masks NMI on a PC (not modelled: there is no NMI source here); bits 6:0 index. */
  writeIndex(v: number): void {
    this.index = v & 0x7f
  }

  readIndex(): number {
    return this.index
  }

  readData(): number {
    const i = this.index
    switch (i) {
      case REG_SECONDS:
      case REG_MINUTES:
      case REG_HOURS:
      case REG_DAY_OF_WEEK:
      case REG_DAY_OF_MONTH:
      case REG_MONTH:
      case REG_YEAR:
      case REG_CENTURY:
        return this.encodeField(i, this.shownFields())
      case REG_A:
        return this.regA | (this.updateInProgress() ? A_UIP : 0)
      case REG_B:
        return this.regB
      case REG_C: {
        this.catchUp()
        const v = this.flags
        this.flags = 0
        if (v & C_IRQF) this.irq.setLevel(false)
        this.arm()
        return v
      }
      case REG_D:
        return D_VRT
      default:
        return this.ram[i]!
    }
  }

  writeData(v: number): void {
    const i = this.index
    switch (i) {
      case REG_SECONDS:
      case REG_MINUTES:
      case REG_HOURS:
      case REG_DAY_OF_MONTH:
      case REG_MONTH:
      case REG_YEAR:
      case REG_CENTURY:
        this.setField(i, v)
        return
      case REG_DAY_OF_WEEK:
        // Shown from the date, so a guest cannot make them disagree; the write is dropped.
        return
      case REG_A:
        this.catchUp()
        this.setRunning(() => {
          this.regA = v & ~A_UIP
        })
        this.arm()
        return
      case REG_B:
        this.catchUp()
        // SET stops updates and clears UIE (datasheet, register B bit 7).
        this.setRunning(() => {
          this.regB = v & B_SET ? v & ~B_UIE : v
        })
        this.raiseIfDue()
        this.arm()
        return
      case REG_C:
      case REG_D:
        return // read-only
      default:
        this.ram[i] = v
    }
  }

  /** Stops the host timer (the machine is paused or gone); flags catch up when the guest looks again. */
  pause(): void {
    this.paused = true
    this.disarm()
  }

  resume(): void {
    this.paused = false
    this.arm()
  }

  private running(): boolean {
    return (this.regB & B_SET) === 0 && (this.regA & A_DV_MASK) === A_DV_RUNNING
  }

  /** Applies a change to A or B; when it stops or restarts the clock, freezes or re-bases the time. */
  private setRunning(change: () => void): void {
    const before = this.running()
    const shown = this.shownFields()
    change()
    const after = this.running()
    if (before && !after) this.stopped = shown
    else if (!before && after) {
      // The clock restarts at the whole second that was set (its divider chain starts afresh).
      const start = msOf(shown)
      this.stopped = undefined
      this.offsetMs = start - this.clock.now()
      this.flagsAt = start
    }
  }

  private updateInProgress(): boolean {
    if (!this.running()) return false
    const t = this.timeMs()
    return 1000 - mod(t, 1000) <= UIP_LEAD_MS
  }

  private encodeField(reg: number, f: Fields): number {
    const binary = (this.regB & B_DM_BINARY) !== 0
    const enc = (n: number) => (binary ? n : toBcd(n))
    switch (reg) {
      case REG_SECONDS:
        return enc(f.sec)
      case REG_MINUTES:
        return enc(f.min)
      case REG_HOURS: {
        if (this.regB & B_24H) return enc(f.hour)
        const h12 = f.hour % 12 === 0 ? 12 : f.hour % 12
        return enc(h12) | (f.hour >= 12 ? 0x80 : 0)
      }
      case REG_DAY_OF_WEEK:
        return enc(new Date(msOf(f)).getUTCDay() + 1)
      case REG_DAY_OF_MONTH:
        return enc(f.mday)
      case REG_MONTH:
        return enc(f.mon)
      case REG_YEAR:
        return enc(mod(f.year, 100))
      default:
        return enc(mod(Math.floor(f.year / 100), 100))
    }
  }

  /** A time register written: the shown time changes to match, keeping the fraction of the second. */
  private setField(reg: number, raw: number): void {
    const binary = (this.regB & B_DM_BINARY) !== 0
    const dec = (n: number) => (binary ? n : fromBcd(n))
    const t = this.timeMs()
    const f = this.shownFields()
    switch (reg) {
      case REG_SECONDS:
        f.sec = dec(raw & 0x7f)
        break
      case REG_MINUTES:
        f.min = dec(raw & 0x7f)
        break
      case REG_HOURS:
        if (this.regB & B_24H) f.hour = dec(raw & 0x3f)
        else f.hour = (dec(raw & 0x1f) % 12) + (raw & 0x80 ? 12 : 0)
        break
      case REG_DAY_OF_MONTH:
        f.mday = dec(raw & 0x3f)
        break
      case REG_MONTH:
        f.mon = dec(raw & 0x1f)
        break
      case REG_YEAR:
        f.year = Math.floor(f.year / 100) * 100 + (dec(raw) % 100)
        break
      default:
        f.year = (dec(raw) % 100) * 100 + mod(f.year, 100)
    }
    if (this.stopped) {
      this.stopped = f
      return
    }
    // Out-of-range values (a 31st of February, BCD nibbles above 9) roll over as Date.UTC rolls them.
    const ms = msOf(f) + mod(t, 1000)
    this.catchUp()
    this.offsetMs = ms - this.clock.now()
    this.flagsAt = ms
    this.arm()
  }

  /** Sets PF, UF and AF for every period, update and alarm match since the flags were last brought up to date. */
  private catchUp(): void {
    const to = this.timeMs()
    const from = this.flagsAt
    this.flagsAt = to
    if (to <= from) return
    const period = periodicIntervalMs(this.regA & A_RS_MASK)
    if (
      period > 0 &&
      (this.regA & A_DV_MASK) === A_DV_RUNNING &&
      Math.floor(to / period) > Math.floor(from / period)
    )
      this.flags |= C_PF
    const firstSecond = Math.floor(from / 1000) + 1
    const lastSecond = Math.floor(to / 1000)
    if (this.running() && lastSecond >= firstSecond) {
      this.flags |= C_UF
      // Any pattern of the three alarm bytes matches within a day of updates.
      for (let s = Math.max(firstSecond, lastSecond - 86400); s <= lastSecond; s++) {
        if (this.alarmMatches(s)) {
          this.flags |= C_AF
          break
        }
      }
    }
    this.raiseIfDue()
  }

  /** Whether the alarm bytes match the time at `second` (since the epoch; UTC fields, no Date needed). */
  private alarmMatches(second: number): boolean {
    const f: Fields = {
      sec: mod(second, 60),
      min: mod(Math.floor(second / 60), 60),
      hour: mod(Math.floor(second / 3600), 24),
      mday: 1,
      mon: 1,
      year: 2000,
    }
    const match = (alarmReg: number, reg: number) => {
      const a = this.ram[alarmReg]!
      return (a & ALARM_ANY) === ALARM_ANY || a === this.encodeField(reg, f)
    }
    return (
      match(REG_SECONDS_ALARM, REG_SECONDS) &&
      match(REG_MINUTES_ALARM, REG_MINUTES) &&
      match(REG_HOURS_ALARM, REG_HOURS)
    )
  }

  /** IRQF follows the enabled flags; its rising edge is the interrupt (IRQ 8 is edge-triggered on a PC). */
  private raiseIfDue(): void {
    const due = this.flags & this.regB & (C_PF | C_AF | C_UF)
    if (due && !(this.flags & C_IRQF)) {
      this.flags |= C_IRQF
      this.irq.setLevel(true)
    }
  }

  /** Schedules the host timer for the next event that would raise IRQ 8, if any interrupt is enabled. */
  private arm(): void {
    this.disarm()
    if (this.paused || this.flags & C_IRQF) return // the line is up until the guest reads C
    const t = this.timeMs()
    let next = Number.POSITIVE_INFINITY
    const period = periodicIntervalMs(this.regA & A_RS_MASK)
    if (this.regB & B_PIE && period > 0 && (this.regA & A_DV_MASK) === A_DV_RUNNING)
      next = Math.max(MIN_TIMER_MS, period - mod(t, period))
    if (this.regB & (B_UIE | B_AIE) && this.running()) next = Math.min(next, 1000 - mod(t, 1000))
    if (next === Number.POSITIVE_INFINITY) return
    this.timer = this.clock.setTimeout(
      () => {
        this.timer = undefined
        this.catchUp()
        this.arm()
      },
      Math.max(MIN_TIMER_MS, Math.ceil(next)),
    )
  }

  private disarm(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer)
    this.timer = undefined
  }
}

/** The fields' time, ms since the epoch; out-of-range fields roll over as Date.UTC rolls them. */
function msOf(f: Fields): number {
  // Not Date.UTC: it reads years 0-99 as 1900-1999.
  const d = new Date(0)
  d.setUTCFullYear(f.year, f.mon - 1, f.mday)
  d.setUTCHours(f.hour, f.min, f.sec, 0)
  const ms = d.getTime()
  return Number.isFinite(ms) ? ms : 0
}

function fieldsOf(ms: number): Fields {
  const d = new Date(ms)
  return {
    sec: d.getUTCSeconds(),
    min: d.getUTCMinutes(),
    hour: d.getUTCHours(),
    mday: d.getUTCDate(),
    mon: d.getUTCMonth() + 1,
    year: d.getUTCFullYear(),
  }
}

function toBcd(n: number): number {
  return ((Math.floor(n / 10) % 10) << 4) | (n % 10)
}

function fromBcd(b: number): number {
  return (b >> 4) * 10 + (b & 0x0f)
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n
}
