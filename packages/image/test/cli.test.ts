// `vmm image` argument handling, the commands that need no build, and the progress display.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type CliIo, ProgressDisplay, runImageCommand } from '../src/cli-main.js'

function capture(isTTY = false): { io: CliIo; out: () => string; err: () => string } {
  let out = ''
  let err = ''
  const stream = (append: (s: string) => void) =>
    ({
      isTTY,
      columns: 60,
      write: (s: string) => {
        append(s)
        return true
      },
    }) as unknown as CliIo['out']
  return {
    io: { out: stream((s) => (out += s)), err: stream((s) => (err += s)) },
    out: () => out,
    err: () => err,
  }
}

let cache: string
const saved = process.env.VMM_CACHE_DIR
beforeEach(() => {
  cache = mkdtempSync(join(tmpdir(), 'vmm-cli-'))
  process.env.VMM_CACHE_DIR = cache
})
afterEach(() => {
  rmSync(cache, { recursive: true, force: true })
  if (saved === undefined) delete process.env.VMM_CACHE_DIR
  else process.env.VMM_CACHE_DIR = saved
})

describe('runImageCommand', () => {
  it('rejects unknown commands and options with the usage, exit status 2', async () => {
    for (const argv of [['frobnicate'], ['build', '--jobs', '0'], ['path', '--verbose'], []]) {
      const c = capture()
      expect(await runImageCommand(argv, c.io)).toBe(2)
      expect(c.err() + c.out()).toContain('usage: vmm image <command>')
    }
  })

  it('path: exit status 1 and what to run when nothing is cached', async () => {
    const c = capture()
    expect(await runImageCommand(['path'], c.io)).toBe(1)
    expect(c.err()).toContain('run `vmm image build`')
  })

  it('clean: removes default-guest/ of the cache, and refuses while a build holds a lock', async () => {
    const kernel = join(cache, 'default-guest', 'kernel')
    mkdirSync(join(kernel, 'abc'), { recursive: true })
    writeFileSync(join(kernel, 'def.lock'), `${process.pid}\n${hostname()}\n`)
    const busy = capture()
    expect(await runImageCommand(['clean'], busy.io)).toBe(1)
    expect(busy.err()).toContain(`a build (pid ${process.pid}`)
    expect(existsSync(join(kernel, 'abc'))).toBe(true)

    rmSync(join(kernel, 'def.lock'))
    const c = capture()
    expect(await runImageCommand(['clean'], c.io)).toBe(0)
    expect(c.out()).toBe(`removed ${join(cache, 'default-guest')}\n`)
    expect(existsSync(join(cache, 'default-guest'))).toBe(false)
  })
})

describe('ProgressDisplay', () => {
  it('off a terminal: a line per stage, per 10 % of the compile, and per finished stage', () => {
    const c = capture(false)
    const d = new ProgressDisplay(c.io.err)
    d.update({ stage: 'configure', message: 'make tinyconfig' })
    for (const [i, f] of [0, 0.05, 0.1, 0.15, 0.5, 0.99].entries())
      d.update({ stage: 'compile', message: `CC file${i}.o`, fraction: f })
    d.update({ stage: 'done', message: 'built' })
    d.stop()
    const lines = c
      .err()
      .trim()
      .split('\n')
      .map((l) => l.replace(/\d+\.\d s$/, 'N s').replace(/\[\d+:\d\d\]/, '[T]'))
    expect(lines).toEqual([
      'configure: make tinyconfig',
      'configure: finished after N s',
      'compile: CC file0.o',
      'compile: 0% [T]',
      'compile: 10% [T]',
      'compile: 50% [T]',
      'compile: 90% [T]',
      'compile: finished after N s',
    ])
  })

  it('marks the stage in progress as stopped when the build fails or is interrupted', () => {
    const c = capture(false)
    const d = new ProgressDisplay(c.io.err)
    d.update({ stage: 'extract', message: 'unpacking' })
    d.stop(false)
    expect(c.err()).toMatch(/^extract: unpacking\nextract: stopped after \d+\.\d s\n$/)
  })

  it('on a terminal: redraws one line with spinner, percentage and the latest target', async () => {
    const c = capture(true)
    const d = new ProgressDisplay(c.io.err)
    d.update({ stage: 'compile', message: 'CC kernel/fork.o', fraction: 0.42 })
    await new Promise((r) => setTimeout(r, 250))
    d.stop()
    // ESC [ 2 K: erase the line before redrawing it.
    const erase = '\r\x1b[2K'
    expect(c.err()).toContain(`${erase}${'⠋'} compile 42% [0:00] CC kernel/fork.o`)
    // The spinner line is erased and replaced by the finished stage's line.
    const last = c.err().slice(c.err().lastIndexOf(erase) + erase.length)
    expect(last).toMatch(/^✓ compile \(\d+\.\d s\)\n$/)
  })
})
