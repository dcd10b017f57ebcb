// `vmm image build|path|clean`: the command line of the default guest builder. The bin
// (cli.ts) and the vmm command both call runImageCommand.
import { cleanDefaultGuest, type DefaultGuest, ensureDefaultGuest, findDefaultGuest } from './guest.js'
import type { ProgressEvent, Stage } from './progress.js'

const USAGE = `usage: vmm image <command> [options]
  build [--jobs N] [--json]  build the default guest (kernel + initramfs) unless cached; print its paths
  path [--json]              print the cached default guest's paths (exit status 1 if not built)
  clean                      remove the cached default guest builds and downloads
The cache is $VMM_CACHE_DIR, else $XDG_CACHE_HOME/vmm, else ~/.cache/vmm.`

export interface CliIo {
  out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }
  err: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }
}

const SPINNER = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏'

function clock(ms: number): string {
  const s = Math.floor(ms / 1000)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

/**
 * Progress on a terminal: one line redrawn ten times a second (spinner, stage, percentage,
 * elapsed time, the latest make target) and a finished line per stage. Elsewhere (CI logs):
 * a line per stage and one per 10 % of the compile.
 */
export class ProgressDisplay {
  private readonly started = Date.now()
  private stage: Stage | undefined
  private stageStarted = Date.now()
  private last: ProgressEvent | undefined
  private tick = 0
  private lastDecile = -1
  private readonly timer: NodeJS.Timeout | undefined

  constructor(private readonly stream: CliIo['err']) {
    if (stream.isTTY) this.timer = setInterval(() => this.draw(), 100)
  }

  update = (e: ProgressEvent) => {
    if (e.stage !== this.stage) {
      this.endStage()
      this.stage = e.stage
      this.stageStarted = Date.now()
      this.lastDecile = -1
      if (!this.stream.isTTY && e.stage !== 'done') this.stream.write(`${e.stage}: ${e.message}\n`)
    }
    this.last = e
    if (!this.stream.isTTY && e.fraction !== undefined) {
      const decile = Math.floor(e.fraction * 10)
      if (decile > this.lastDecile) {
        this.lastDecile = decile
        this.stream.write(`${e.stage}: ${decile * 10}% [${clock(Date.now() - this.started)}]\n`)
      }
    }
  }

  /** Stops redrawing; `ok` false marks the stage in progress as failed or interrupted. */
  stop(ok = true) {
    if (this.timer) clearInterval(this.timer)
    this.endStage(ok)
    this.stage = 'done'
  }

  private endStage(ok = true) {
    if (!this.stage || this.stage === 'done') return
    const took = ((Date.now() - this.stageStarted) / 1000).toFixed(1)
    if (this.stream.isTTY) this.stream.write(`\r\x1b[2K${ok ? '✓' : '✗'} ${this.stage} (${took} s)\n`)
    else this.stream.write(`${this.stage}: ${ok ? 'finished' : 'stopped'} after ${took} s\n`)
  }

  private draw() {
    if (!this.last || this.stage === 'done') return
    const pct =
      this.last.fraction === undefined ? '' : ` ${String(Math.floor(this.last.fraction * 100)).padStart(2)}%`
    const head = `${SPINNER[this.tick++ % SPINNER.length]} ${this.last.stage}${pct} [${clock(Date.now() - this.started)}] `
    const room = Math.max(0, (this.stream.columns ?? 80) - head.length - 1)
    this.stream.write(`\r\x1b[2K${head}${this.last.message.slice(0, room)}`)
  }
}

function printGuest(io: CliIo, g: DefaultGuest, json: boolean) {
  if (json) {
    io.out.write(`${JSON.stringify(g, null, 2)}\n`)
    return
  }
  const rows: [string, string][] = [
    ['vmlinux', g.vmlinux],
    ['bzImage', g.bzImage],
    ['initramfs', g.initramfs],
    ['config', g.config],
    ['cmdline', g.cmdline],
    ['cacheKey', g.cacheKey],
  ]
  for (const [k, v] of rows) io.out.write(`${k.padEnd(10)} ${v}\n`)
}

/** Runs one `vmm image` command; returns the process exit status. */
export async function runImageCommand(
  argv: readonly string[],
  io: CliIo = { out: process.stdout, err: process.stderr },
): Promise<number> {
  const [command, ...rest] = argv
  const json = rest.includes('--json')
  const jobsAt = rest.indexOf('--jobs')
  const jobs = jobsAt >= 0 ? Number(rest[jobsAt + 1]) : undefined
  const known = new Set(['--json', '--jobs', ...(jobsAt >= 0 ? [rest[jobsAt + 1]] : [])])
  const unknown = rest.filter((a) => !known.has(a))
  if (unknown.length > 0 || (jobs !== undefined && !(Number.isInteger(jobs) && jobs > 0))) {
    io.err.write(`vmm image: bad arguments: ${rest.join(' ')}\n${USAGE}\n`)
    return 2
  }
  try {
    switch (command) {
      case 'build': {
        const display = new ProgressDisplay(io.err)
        const started = Date.now()
        // Ctrl-C or a CI timeout: stop make and its compilers and leave nothing half-built
        // behind (the build's process group is not the terminal's, so it must be told).
        const stop = new AbortController()
        const onSignal = () => stop.abort()
        process.once('SIGINT', onSignal)
        process.once('SIGTERM', onSignal)
        let g: Awaited<ReturnType<typeof ensureDefaultGuest>>
        try {
          g = await ensureDefaultGuest({
            onProgress: display.update,
            signal: stop.signal,
            ...(jobs ? { jobs } : {}),
          })
          display.stop()
        } catch (e) {
          display.stop(false)
          if (!stop.signal.aborted) throw e
          io.err.write('vmm image build: interrupted; nothing was added to the cache\n')
          return 130
        } finally {
          process.off('SIGINT', onSignal)
          process.off('SIGTERM', onSignal)
        }
        io.err.write(
          g.built
            ? `default guest built in ${clock(Date.now() - started)}\n`
            : 'default guest already in the cache\n',
        )
        printGuest(io, g, json)
        return 0
      }
      case 'path': {
        const g = await findDefaultGuest()
        if (!g) {
          io.err.write(
            'vmm image: the default guest is not built for the current inputs; run `vmm image build`\n',
          )
          return 1
        }
        printGuest(io, g, json)
        return 0
      }
      case 'clean':
        io.out.write(`removed ${cleanDefaultGuest()}\n`)
        return 0
      case undefined:
      case 'help':
      case '--help':
        io.out.write(`${USAGE}\n`)
        return command === undefined ? 2 : 0
      default:
        io.err.write(`vmm image: unknown command ${command}\n${USAGE}\n`)
        return 2
    }
  } catch (e) {
    io.err.write(`vmm image ${command}: ${(e as Error).message}\n`)
    return 1
  }
}
