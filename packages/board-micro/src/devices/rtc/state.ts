// The MC146818A's state in a snapshot (./device.ts saves and restores it), and its check: a saved
// state is untrusted input, so every field is range-checked before the chip takes any of it.
import type { SavedState } from '@vmm/core'
import type { Fields } from './clock.js'

export interface RtcState {
  index: number
  /** The 128 bytes of CMOS RAM and alarm registers. */
  ram: number[]
  regA: number
  regB: number
  flags: number
  /**
   * Guest clock minus host wall clock, ms. Kept as is: the clock is battery-backed and goes on
   * while the snapshot sits on disk, so a restored guest reads the wall-clock time of the restore
   * (and sees the update and periodic flags of the time in between), as a real machine powered
   * back on would.
   */
  offsetMs: number
  /** The fields shown while the clock is stopped (SET or divider reset), else null. */
  stopped: Fields | null
  /** Guest-clock ms up to which the flags are up to date. */
  flagsAt: number
}

/** A year the registers can show (century register 0-99 in BCD or binary). */
const YEAR_MAX = 9999

export function readRtcState(s: SavedState): RtcState {
  s.only('index', 'ram', 'regA', 'regB', 'flags', 'offsetMs', 'stopped', 'flagsAt')
  const ram = s.bytes('ram', 128, 128)
  return {
    index: s.int('index', 0, 0x7f),
    ram,
    regA: s.u8('regA'),
    regB: s.u8('regB'),
    flags: s.u8('flags'),
    offsetMs: s.number('offsetMs'),
    stopped: s.isNull('stopped') ? null : readFields(s.nested('stopped')),
    flagsAt: s.number('flagsAt'),
  }
}

function readFields(s: SavedState): Fields {
  s.only('sec', 'min', 'hour', 'mday', 'mon', 'year')
  return {
    sec: s.int('sec', 0, 59),
    min: s.int('min', 0, 59),
    hour: s.int('hour', 0, 23),
    mday: s.int('mday', 1, 31),
    mon: s.int('mon', 1, 12),
    year: s.int('year', 0, YEAR_MAX),
  }
}
