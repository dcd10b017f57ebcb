// The PC's CMOS real-time clock, a Motorola MC146818A: ports 0x70 (index) and 0x71 (data),
// ISA IRQ 8. The register map and bits are in ./registers.ts, the time base in ./clock.ts.
//
// The clock is the host's wall clock plus an offset the guest moves by setting the time, so it
// keeps running while the machine is paused, as a battery-backed clock would. Flags are brought up
// to date from elapsed time whenever the guest looks (a lazy counter), and a host timer runs only
// while an interrupt is enabled, to raise IRQ 8 on time.

import type { InterruptLine } from '@vmm/core'
import {
  type Fields,
  fieldsOf,
  fromBcd,
  hostClock,
  mod,
  msOf,
  periodicIntervalMs,
  type RtcClock,
  toBcd,
} from './clock.js'
import {
  A_DV_MASK,
  A_DV_RUNNING,
  A_RS_MASK,
  A_UIP,
  ALARM_ANY,
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
  D_VRT,
  REG_A,
  REG_B,
  REG_C,
  REG_CENTURY,
  REG_D,
  REG_DAY_OF_MONTH,
  REG_DAY_OF_WEEK,
  REG_HOURS,
  REG_HOURS_ALARM,
  REG_MINUTES,
  REG_MINUTES_ALARM,
  REG_MONTH,
  REG_SECONDS,
  REG_SECONDS_ALARM,
  REG_YEAR,
} from './registers.js'
import type { RtcState } from './state.js'

/** The update cycle takes 1984 µs and UIP rises 244 µs before it (datasheet "Update Cycle"). */
const UIP_LEAD_MS = 0.244
/** Node timers cannot wake faster than this; faster periodic rates coalesce (PF is a flag, not a count). */
const MIN_TIMER_MS = 1

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

  saveState(): RtcState {
    const { index, regA, regB, flags, offsetMs, flagsAt } = this
    const stopped = this.stopped ? { ...this.stopped } : null
    return { index, ram: [...this.ram], regA, regB, flags, offsetMs, stopped, flagsAt }
  }

  /**
   * Takes a checked state (state.ts) on a chip whose machine has not run. IRQ 8 is edge-triggered:
   * an edge raised before the snapshot is in the irqchip's state, so nothing is raised here; the
   * host timer is armed on resume.
   */
  restoreState(s: RtcState): void {
    this.disarm()
    this.index = s.index
    this.ram.set(s.ram)
    this.regA = s.regA
    this.regB = s.regB
    this.flags = s.flags
    this.offsetMs = s.offsetMs
    this.stopped = s.stopped ? { ...s.stopped } : undefined
    this.flagsAt = s.flagsAt
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
