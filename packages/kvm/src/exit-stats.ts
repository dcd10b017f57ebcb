// Exit statistics for investigations (bench:boot): VMM_EXIT_STATS=<file> counts every vCPU exit
// by kind and place (PIO port, MMIO page, other exit reasons) with the time the JavaScript thread
// spent on it, and writes them to <file> as JSON every second and when the process exits (a
// benchmark may end the run with SIGKILL). Off, it costs nothing: the exit path is only wrapped
// when the variable is set at start.
import { writeFileSync } from 'node:fs'
import type { ExitHandler } from './exits.js'

interface Row {
  count: number
  ms: number
}

export class ExitStats {
  private readonly rows = new Map<string, Row>()
  private readonly started = performance.now()
  /** Exits handled and the time in Vm's exit handling (dispatch + device handlers), all kinds. */
  exits = 0
  handleMs = 0

  constructor(private readonly file: string) {
    const dump = () => this.write()
    setInterval(dump, 1000).unref()
    process.on('exit', dump)
  }

  add(key: string, ms: number): void {
    const row = this.rows.get(key)
    if (row) {
      row.count++
      row.ms += ms
    } else this.rows.set(key, { count: 1, ms })
  }

  /** The handler with each device call counted and timed. */
  wrap<V>(h: ExitHandler<V>): ExitHandler<V> {
    const timed =
      (prefix: string, page: boolean, f: (a: number, d: Uint8Array, v: V) => void) =>
      (a: number, d: Uint8Array, v: V) => {
        const t0 = performance.now()
        try {
          f(a, d, v)
        } finally {
          const where = page ? Math.floor(a / 4096) * 4096 : a
          this.add(`${prefix} 0x${where.toString(16)}`, performance.now() - t0)
        }
      }
    return {
      pioIn: timed('pio in', false, h.pioIn),
      pioOut: timed('pio out', false, h.pioOut),
      mmioRead: timed('mmio read (page)', true, h.mmioRead),
      mmioWrite: timed('mmio write (page)', true, h.mmioWrite),
      onExit: (exit, v) => {
        const t0 = performance.now()
        try {
          return h.onExit(exit, v)
        } finally {
          this.add(exit.kind, performance.now() - t0)
        }
      },
    }
  }

  write(): void {
    const seconds = (performance.now() - this.started) / 1000
    const rows = [...this.rows]
      .sort((a, b) => b[1].count - a[1].count)
      .map(([key, r]) => ({ key, count: r.count, ms: Number(r.ms.toFixed(3)) }))
    try {
      writeFileSync(
        this.file,
        `${JSON.stringify({ seconds, exits: this.exits, handleMs: Number(this.handleMs.toFixed(3)), rows }, null, 1)}\n`,
      )
    } catch {}
  }
}

/** The process's statistics when VMM_EXIT_STATS names a file, else undefined. */
export const exitStats: ExitStats | undefined = process.env.VMM_EXIT_STATS
  ? new ExitStats(process.env.VMM_EXIT_STATS)
  : undefined
