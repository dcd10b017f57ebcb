// `vmm jail ... -- run <manifest>` / `-- restore <dir>`: the VMM confined, in Firecracker's jailer
// order (docs/jailer.md there; ../shared/docs/anchors.md "Sandboxing"). This side (the supervisor,
// root, on the host) reads the machine, decides what the jail holds, makes the jail directory and
// the cgroups, then hands the plan to the native helper vmm-jail (@vmm/host), which does the
// namespaces, mounts, pivot_root, ids and exec in a single-threaded process, and waits for it.
// After the run it removes what it made: the cgroups, <chroot-base>/<id>/root and <id> (rmdir
// only: a directory someone else filled is left, and named); what a supervisor killed by SIGKILL
// left, the next one removes (owner.ts).
import { spawn } from 'node:child_process'
import { mkdirSync, rmdirSync, statSync } from 'node:fs'
import { constants } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  CAP_NET_ADMIN,
  dropEnv,
  hostDevices,
  jailEnv,
  planText,
  runtimeFiles,
  SHARE_CAPS,
  tidyBinds,
  tidyLinks,
} from '@vmm/host/jail'
import { EXIT_HOST_FAILURE, EXIT_USAGE } from '../exit-codes.js'
import { JAIL_USAGE, type JailOptions, JailUsageError, parseJailArgs } from './args.js'
import { hugetlbHits, type JailCgroups, makeCgroups, oomKills, removeCgroups } from './cgroup.js'
import { type MachineNeeds, machineNeeds, tidyMade } from './machine.js'
import { recordCgroups, removeOwner, sweepLeftovers, writeOwner } from './owner.js'

const cliMain = fileURLToPath(new URL('../main.js', import.meta.url))

export async function jail(argv: readonly string[]): Promise<number> {
  try {
    return await jailed(argv)
  } catch (e) {
    // Bad input, checked before anything was made (or after it was removed again): one line.
    if (!(e instanceof JailUsageError)) throw e
    process.stderr.write(`vmm jail: ${e.message}\n`)
    return EXIT_USAGE
  }
}

async function jailed(argv: readonly string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(`${JAIL_USAGE}\n`)
    return argv.length === 0 ? EXIT_USAGE : 0
  }
  const o = parseJailArgs(argv)
  if (process.getuid?.() !== 0)
    throw new JailUsageError(
      'vmm jail must run as root (it makes namespaces, mounts and cgroups, then drops to --uid)',
    )
  return runInJail(o, argv)
}

/**
 * Runs `o` in a jail and returns the VMM's exit status: `vmm jail` (argv: its own, for
 * --daemonize) and the default jail of `vmm run`/`vmm restore` (default.ts, o.dropLate).
 */
export async function runInJail(o: JailOptions, argv: readonly string[]): Promise<number> {
  const { jailHelperPath } = await import('@vmm/host')
  const helper = jailHelperPath()
  // Everything the jail will hold is worked out, and checked, before anything is made.
  const needs = await machineNeeds(o, cliMain)
  if (o.daemonize) return daemonize(argv)
  const jailDir = join(o.chrootBase, o.id)
  const root = join(jailDir, 'root')
  const cwd = needs.binds.some(
    (b) => b.source === b.target && statSync(b.source).isDirectory() && under(process.cwd(), b.target),
  )
    ? process.cwd()
    : '/'
  const made: string[] = []
  let cgroups: JailCgroups | undefined
  try {
    mkdirSync(o.chrootBase, { recursive: true, mode: 0o755 })
    sweep(o.chrootBase)
    try {
      mkdirSync(jailDir, { mode: 0o700 })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST')
        throw new JailUsageError(
          `the jail directory ${jailDir} already exists: vmm jail makes a new one for each run and never reuses or deletes one it did not make (another jail with --id ${o.id}, or one left behind: remove it if it is yours)`,
        )
      throw e
    }
    made.push(jailDir)
    writeOwner(jailDir)
    mkdirSync(root, { mode: 0o755 })
    made.push(root)
    cgroups = makeCgroups(o.id, o.cgroups, o.parentCgroup)
    for (const e of cgroups.enabled) process.stderr.write(`vmm jail: cgroup v2: enabled (and left so) ${e}\n`)
    recordCgroups(jailDir, cgroups.dirs)
    if (cgroups.memoryLimit !== undefined && needs.ramBytes > cgroups.memoryLimit)
      throw new JailUsageError(
        `the machine asks for ${needs.ramBytes} bytes of RAM, more than the jail's cgroup memory limit of ${cgroups.memoryLimit} bytes allows`,
      )
    const extra = runtimeFiles(o)
    const binds = tidyBinds([...needs.binds, ...extra.binds])
    const plan = planText({
      root,
      uid: o.uid,
      gid: o.gid,
      hostname: o.id,
      binds,
      links: tidyLinks(needs.links, binds),
      devices: hostDevices(),
      cgroupDirs: cgroups.dirs,
      rlimits: o.rlimits,
      ...(o.netns === undefined ? {} : { netns: o.netns }),
      cwd,
      env: [...jailEnv(process.env, extra.cacheDir), ...extra.env, ...dropEnvs(o, needs)],
      dropLate: o.dropLate === true,
      ...(o.dropLate && needs.shares.length > 0 ? { caps: shareCaps(needs) } : {}),
      exec: [process.execPath, process.execPath, cliMain, o.command, o.target, ...needs.vmmArgs],
    })
    if (process.env.VMM_JAIL_PRINT_PLAN === '1') process.stderr.write(plan)
    const status = await runHelper(helper, plan)
    if (status === 128 + 9 && oomKills(cgroups) > 0) {
      process.stderr.write(
        `vmm jail: the kernel's OOM killer ended the VMM: the jail's cgroup memory limit (${cgroups.memoryLimit} bytes) was reached\n`,
      )
      return EXIT_HOST_FAILURE
    }
    const hits = status === 128 + 7 ? hugetlbHits(cgroups) : []
    if (hits.length > 0) {
      process.stderr.write(
        `vmm jail: the VMM got SIGBUS touching hugepages beyond the jail's cgroup hugetlb limit (${hits.join(', ')})\n`,
      )
      return EXIT_HOST_FAILURE
    }
    if (status > 128) process.stderr.write(`vmm jail: the VMM was ended by signal ${status - 128}\n`)
    return status
  } finally {
    // drop-late: what the VMM made as root in its idmapped directories (machine.ts).
    if (o.dropLate) tidyMade(needs.created, o.uid)
    const left = [...removeCgroups(cgroups?.dirs ?? []), ...removeMade(made.filter((d) => d !== jailDir))]
    // The owner record goes last, and only when all else has: a later run's sweep (owner.ts)
    // then still finds what this one had to leave.
    if (made.includes(jailDir) && left.length === 0) {
      removeOwner(jailDir)
      left.push(...removeMade([jailDir]))
    } else if (made.includes(jailDir)) left.push(jailDir)
    if (left.length > 0)
      process.stderr.write(`vmm jail: left behind (not empty or still in use): ${left.join(', ')}\n`)
  }
}

/** The capabilities a drop-late VMM with a writable share keeps (plan.ts SHARE_CAPS). */
const shareCaps = (needs: MachineNeeds) => [
  ...Object.values(SHARE_CAPS),
  ...(needs.tap ? [CAP_NET_ADMIN] : []),
]

/**
 * drop-late: VMM_JAIL_DROP, the ids drop.ts takes; or, with a writable share, VMM_JAIL_KEPT, what
 * the VMM that stays root holds (drop.ts checks it and says it under --timings).
 */
function dropEnvs(o: JailOptions, needs: MachineNeeds): string[] {
  if (!o.dropLate) return []
  return [dropEnv(needs.shares.length === 0 ? o : { caps: shareCaps(needs), shares: needs.shares })]
}

/** Removes the jail directories a killed supervisor left (owner.ts); a failed sweep never stops the run. */
function sweep(chrootBase: string): void {
  let left: string[]
  try {
    left = sweepLeftovers(chrootBase)
  } catch (e) {
    left = [`${chrootBase} (not swept: ${(e as Error).message})`]
  }
  if (left.length > 0)
    process.stderr.write(
      `vmm jail: left behind by a run that ended without cleaning up (not empty or still in use): ${left.join(', ')}\n`,
    )
}

const under = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`)

/** rmdir of what we made, innermost first: a directory is removed only while it is empty. */
function removeMade(made: readonly string[]): string[] {
  const left: string[] = []
  for (const d of [...made].reverse()) {
    try {
      rmdirSync(d)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        left.push(`${d} (${(e as NodeJS.ErrnoException).code})`)
    }
  }
  return left
}

/** Starts the helper with the plan on its fd 3 and our stdio, forwards stop signals, resolves to its exit status. */
function runHelper(helper: string, plan: string): Promise<number> {
  const child = spawn(helper, [], { stdio: ['inherit', 'inherit', 'inherit', 'pipe'] })
  const pipe = child.stdio[3] as NodeJS.WritableStream
  pipe.on('error', () => {}) // the helper's own error says why it stopped reading
  pipe.end(plan)
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const
  const forward = (s: NodeJS.Signals) => void child.kill(s)
  for (const s of signals) process.on(s, forward)
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code, signal) => {
      for (const s of signals) process.off(s, forward)
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0))
    })
  })
}

/** --daemonize: the same jail, detached (its own session, stdio to /dev/null); prints its pid. */
function daemonize(argv: readonly string[]): number {
  const args = argv.filter((a) => a !== '--daemonize')
  const child = spawn(process.execPath, [cliMain, 'jail', ...args], { detached: true, stdio: 'ignore' })
  child.unref()
  process.stdout.write(`${child.pid}\n`)
  return 0
}
