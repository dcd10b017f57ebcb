// Messages a guest can trigger (a driver error a device refused: virtio "device needs reset") go
// through one limiter, so a guest cannot flood the host's stderr: per key, the first `burst` in
// each interval are written, the rest counted and summarised once the interval has passed (or at
// flush). A 60-byte guest once produced 11,000 lines in 3 s (issue 13 item 6).

export interface GuestMessageLimits {
  /** Messages written per key and interval before counting starts (default 5). */
  readonly burst?: number
  /** The interval in ms (default 10,000). */
  readonly intervalMs?: number
  /** Where lines go (default stderr). */
  readonly write?: (line: string) => void
  /** The clock, in ms (default performance.now). */
  readonly now?: () => number
}

interface Window {
  start: number
  written: number
  suppressed: number
}

export class GuestMessageLimiter {
  private readonly windows = new Map<string, Window>()
  private readonly burst: number
  private readonly intervalMs: number
  private readonly write: (line: string) => void
  private readonly now: () => number

  constructor(limits: GuestMessageLimits = {}) {
    this.burst = limits.burst ?? 5
    this.intervalMs = limits.intervalMs ?? 10_000
    this.write = limits.write ?? ((line) => void process.stderr.write(`${line}\n`))
    this.now = limits.now ?? (() => performance.now())
  }

  /** Writes `message` for `key` (a component id and what happened) unless its burst is spent. */
  report(key: string, message: string): void {
    const t = this.now()
    let w = this.windows.get(key)
    if (w && t - w.start >= this.intervalMs) {
      this.summarise(key, w)
      w = undefined
    }
    if (!w) {
      w = { start: t, written: 0, suppressed: 0 }
      this.windows.set(key, w)
    }
    if (w.written < this.burst) {
      w.written++
      this.write(`vmm: ${message}`)
    } else w.suppressed++
  }

  /** Writes the counts still pending (at the end of a run). */
  flush(): void {
    for (const [key, w] of this.windows) this.summarise(key, w)
    this.windows.clear()
  }

  private summarise(key: string, w: Window): void {
    if (w.suppressed > 0)
      this.write(
        `vmm: ${key}: ${w.suppressed} more such messages suppressed (at most ${this.burst} per ${this.intervalMs / 1000} s)`,
      )
    w.suppressed = 0
  }
}

/** The process-wide limiter devices report guest-triggered messages through. */
export const guestMessages = new GuestMessageLimiter()
