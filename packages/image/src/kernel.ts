// Builds the default guest's kernel from Debian's linux-source-6.1 tarball: `make tinyconfig`,
// our fragment merged on top with the kernel's own scripts/kconfig/merge_config.sh, then
// `make vmlinux bzImage`. Why a minimal kernel: ../../../shared/docs/host-kvm.md (a distribution
// kernel needs ~85 s of guest time on our hosts to reach FPU initialisation; this one ~6.5 s).
import { spawn } from 'node:child_process'
import { copyFileSync, createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { basename, join } from 'node:path'
import { checkKconfig, describeMismatches, parseKconfig } from './kconfig.js'
import type { ProgressEvent } from './progress.js'

export interface KernelBuildOptions {
  /** linux-source-6.1.tar.xz (as Debian's linux-source-6.1 package installs it under /usr/src). */
  tarball: string
  /** The config fragment (kernel/micro.config). */
  fragment: string
  /** Patch files (kernel/patches/*.patch) applied in this order with `patch -p1` before configuring. */
  patches?: readonly string[]
  /** An empty scratch directory for the source tree. */
  workDir: string
  /** Where vmlinux, bzImage and config are written. */
  outDir: string
  /** Number of make jobs; defaults to CPUs + 1 (make -j3 on our 2-core machines). */
  jobs?: number
  /** `make` output lines of a previous build, for the percentage; without it a built-in estimate. */
  expectedLines?: number
  onProgress: (e: ProgressEvent) => void
  /** Stops the build: the running command's process group gets SIGTERM, the promise rejects. */
  signal?: AbortSignal
}

/**
 * Kbuild's quiet command lines ("  CC      kernel/fork.o") of one build of kernel/micro.config
 * with Debian's 6.1 source, counted in the build the estimate comes from. The builder records
 * the real count of each build in the cache and uses that next time.
 */
export const DEFAULT_EXPECTED_MAKE_LINES = 1937

/** A failed command of the build, with the end of its output (the log holds all of it). */
export class KernelBuildError extends Error {
  constructor(
    readonly step: string,
    readonly logPath: string,
    readonly tail: string,
  ) {
    super(`kernel build failed at "${step}"; last lines of ${logPath}:\n${tail}`)
    this.name = 'KernelBuildError'
  }
}

const KBUILD_LINE = /^\s{2}([A-Z][A-Z0-9_-]*)\s+(\S.*)$/

/**
 * Runs one command, appending its output to the log, feeding each output line to `onLine`.
 * The command gets a process group of its own so that an abort reaches everything make started
 * (compilers, linkers), not only make.
 */
function runLogged(
  step: string,
  cmd: string,
  args: string[],
  cwd: string,
  logPath: string,
  signal: AbortSignal | undefined,
  onLine: (line: string) => void = () => {},
): Promise<void> {
  signal?.throwIfAborted()
  return new Promise((resolve, reject) => {
    const log = createWriteStream(logPath, { flags: 'a' })
    log.write(`\n$ ${[cmd, ...args].join(' ')}\n`)
    const tail: string[] = []
    let partial = ''
    const child = spawn(cmd, args, {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
      detached: true,
    })
    const abort = () => {
      try {
        process.kill(-child.pid!, 'SIGTERM')
      } catch {}
    }
    signal?.addEventListener('abort', abort, { once: true })
    let settled = false
    const finish = (error?: unknown) => {
      if (settled) return
      settled = true
      signal?.removeEventListener('abort', abort)
      log.end(() => (error ? reject(error) : resolve()))
    }
    const take = (chunk: Buffer) => {
      log.write(chunk)
      const lines = (partial + chunk.toString('utf8')).split('\n')
      partial = lines.pop()!
      for (const l of lines) {
        tail.push(l)
        if (tail.length > 30) tail.shift()
        onLine(l)
      }
    }
    child.stdout.on('data', take)
    child.stderr.on('data', take)
    child.on('error', finish)
    child.on('close', (code, killedBy) => {
      if (partial) tail.push(partial)
      if (code === 0) finish()
      else if (signal?.aborted) finish(signal.reason)
      else
        finish(
          new KernelBuildError(
            `${step} (${killedBy ? `killed by ${killedBy}` : `exit status ${code}`})`,
            logPath,
            tail.slice(-30).join('\n'),
          ),
        )
    })
  })
}

/** Checks a .config against the fragment and throws listing every option kconfig dropped. */
export function requireFragmentHonoured(fragmentText: string, dotConfigText: string, fragmentName: string) {
  const mismatches = checkKconfig(
    parseKconfig(fragmentText, fragmentName),
    parseKconfig(dotConfigText, '.config', false),
  )
  if (mismatches.length > 0)
    throw new Error(
      `kconfig did not apply ${mismatches.length} option(s) of ${fragmentName} (a dependency is off; ` +
        `add it to the fragment):\n${describeMismatches(mismatches)}`,
    )
}

/** Builds the kernel; returns the number of kbuild lines `make` printed (the next build's estimate). */
export async function buildKernel(o: KernelBuildOptions): Promise<number> {
  const log = join(o.outDir, 'build.log')
  mkdirSync(o.outDir, { recursive: true })
  writeFileSync(log, '')
  const stage = (stage: ProgressEvent['stage'], message: string, fraction?: number) =>
    o.onProgress(fraction === undefined ? { stage, message } : { stage, message, fraction })

  stage('extract', `unpacking ${o.tarball}`)
  await runLogged('unpack the source', 'tar', ['-xJf', o.tarball, '-C', o.workDir], o.workDir, log, o.signal)
  const src = join(o.workDir, 'linux-source-6.1')
  for (const patch of o.patches ?? []) {
    stage('extract', `applying ${basename(patch)}`)
    await runLogged(
      `patch ${basename(patch)}`,
      'patch',
      ['-p1', '--forward', '--batch', '-i', patch],
      src,
      log,
      o.signal,
    )
  }

  stage('configure', 'make tinyconfig + kernel/micro.config')
  await runLogged('make tinyconfig', 'make', ['tinyconfig'], src, log, o.signal)
  await runLogged(
    'merge the fragment',
    join(src, 'scripts/kconfig/merge_config.sh'),
    ['-m', '.config', o.fragment],
    src,
    log,
    o.signal,
  )
  await runLogged('make olddefconfig', 'make', ['olddefconfig'], src, log, o.signal)
  const fragmentText = readFileSync(o.fragment, 'utf8')
  // Fail before the five-minute compile rather than after it.
  requireFragmentHonoured(fragmentText, readFileSync(join(src, '.config'), 'utf8'), o.fragment)

  const jobs = o.jobs ?? availableParallelism() + 1
  const expected = o.expectedLines ?? DEFAULT_EXPECTED_MAKE_LINES
  let lines = 0
  stage('compile', `make -j${jobs} vmlinux bzImage`, 0)
  await runLogged(
    'make vmlinux bzImage',
    'make',
    [`-j${jobs}`, 'vmlinux', 'bzImage'],
    src,
    log,
    o.signal,
    (line) => {
      const m = KBUILD_LINE.exec(line)
      if (!m) return
      lines++
      // Capped below 1: an estimate from an older build may be short; "done" is the make exit.
      stage('compile', `${m[1]} ${m[2]}`, Math.min(lines / expected, 0.99))
    },
  )

  stage('verify', 'checking .config against the fragment')
  // The .config the objects were built from: make may have rewritten it (syncconfig).
  const dotConfig = readFileSync(join(src, '.config'), 'utf8')
  requireFragmentHonoured(fragmentText, dotConfig, o.fragment)
  copyFileSync(join(src, 'vmlinux'), join(o.outDir, 'vmlinux'))
  copyFileSync(join(src, 'arch/x86/boot/bzImage'), join(o.outDir, 'bzImage'))
  copyFileSync(join(src, 'System.map'), join(o.outDir, 'System.map'))
  writeFileSync(join(o.outDir, 'config'), dotConfig)
  return lines
}
