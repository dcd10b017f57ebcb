// The RTC's time base: the host clock it runs on, the broken-down fields its registers show, and
// the BCD and rate arithmetic of the MC146818A datasheet (the chip is ./device.ts).

/** The broken-down time the registers show, in UTC fields of the guest's clock. */
export interface Fields {
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

/** The fields' time, ms since the epoch; out-of-range fields roll over as Date.UTC rolls them. */
export function msOf(f: Fields): number {
  // Not Date.UTC: it reads years 0-99 as 1900-1999.
  const d = new Date(0)
  d.setUTCFullYear(f.year, f.mon - 1, f.mday)
  d.setUTCHours(f.hour, f.min, f.sec, 0)
  const ms = d.getTime()
  return Number.isFinite(ms) ? ms : 0
}

export function fieldsOf(ms: number): Fields {
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

export function toBcd(n: number): number {
  return ((Math.floor(n / 10) % 10) << 4) | (n % 10)
}

export function fromBcd(b: number): number {
  return (b >> 4) * 10 + (b & 0x0f)
}

export function mod(a: number, n: number): number {
  return ((a % n) + n) % n
}
