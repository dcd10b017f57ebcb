// `vmm jail` options: who the VMM runs as, where its jail is, its limits, and the VMM command after
// `--` (run <manifest> or restore <dir>, with their own options). Checked here, before anything is
// made, so bad input changes nothing on the host.
import { existsSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { parseSize } from '@vmm/core'

import { checkPlanPath, JailUsageError } from '@vmm/host/jail'

export { checkPlanPath, JailUsageError }

export interface CgroupSetting {
  /** The control file, e.g. memory.limit_in_bytes (cgroup v1) or memory.max (v2). */
  readonly file: string
  readonly value: string
  /** The option that gave it, for errors, when not --cgroup (the default jail's --jail-cgroup). */
  readonly option?: string
}

export interface RlimitSetting {
  readonly name: string
  readonly soft: string
  readonly hard: string
}

export interface JailOptions {
  readonly id: string
  readonly uid: number
  readonly gid: number
  readonly chrootBase: string
  readonly netns?: string
  readonly cgroups: readonly CgroupSetting[]
  /** Where the jail's cgroups are made (v1: per controller, relative to its hierarchy's root). */
  readonly parentCgroup?: string
  readonly rlimits: readonly RlimitSetting[]
  readonly daemonize: boolean
  /** The VMM command: `run` or `restore`, its file (manifest or snapshot directory), its options. */
  readonly command: 'run' | 'restore'
  readonly target: string
  readonly vmmArgs: readonly string[]
  /** Absolute --qmp socket, when given to the VMM command. */
  readonly qmp?: string
  readonly hypervisor?: string
  /**
   * The default jail of `vmm run`/`vmm restore` (default.ts): the VMM builds its machine as root in
   * the jail and drops to uid/gid itself before the first guest instruction (drop.ts), so the files
   * the manifest names need only root's access, as without a jail.
   */
  readonly dropLate?: boolean
}

export const JAIL_USAGE = `usage: vmm jail --id <id> --uid <uid> --gid <gid> [options] -- run <manifest> [run options]
       vmm jail --id <id> --uid <uid> --gid <gid> [options] -- restore <dir> [restore options]

Runs the VMM confined (Firecracker's jailer order): inherited fds closed, a cleared environment, a
per-VM root <chroot-base>/<id>/root holding only what the machine names and what the VMM needs,
new mount, pid, IPC and UTS namespaces, pivot_root, cgroup limits, rlimits, the given uid/gid,
no_new_privs. Sockets the machine names (QMP, consoles, vsock) are made in their own directories,
bound in from outside: give them a directory of their own, writable by the uid.

options:
  --id <id>                 the jail's name: [A-Za-z0-9_-], at most 64 characters
  --uid <uid> --gid <gid>   the ids the VMM runs as (0 is refused unless --allow-root)
  --chroot-base <dir>       where jails are made (default /srv/vmm-jail)
  --netns <path>            join this network namespace (e.g. /var/run/netns/vm1)
  --cgroup <file>=<value>   a cgroup limit, repeatable: memory.limit_in_bytes=512MiB (v1),
                            memory.max=512MiB (v2), cpu.shares=512, pids.max=64,
                            hugetlb.2MB.max=64MiB (v2), ...: each goes to the v1 or
                            v2 hierarchy that has its controller
  --parent-cgroup <path>    where the jail's cgroup is made (default: under vmm jail's own)
  --rlimit <name>=<n>[:<hard>]  repeatable: nofile, nproc, fsize, as, core, memlock, stack, cpu,
                            data (default nofile=2048, as Firecracker's)
  --daemonize               run in the background (stdio to /dev/null), print the supervisor's pid
  --allow-root              allow --uid 0 or --gid 0 (the jail then confines files, not privilege)`

const ID = /^[A-Za-z0-9_-]{1,64}$/
const RLIMITS = new Set(['nofile', 'nproc', 'fsize', 'as', 'core', 'memlock', 'stack', 'cpu', 'data'])

function id(name: string, value: string | undefined): number {
  if (value === undefined) throw new JailUsageError(`vmm jail needs --${name}`)
  if (!/^\d+$/.test(value) || Number(value) > 0xfffffffe)
    throw new JailUsageError(`--${name} must be a number (0 to 4294967294), not "${value}"`)
  return Number(value)
}

/**
 * `<controller>.<file>=<value>`, as `option` (--cgroup; --jail-cgroup for the default jail) gives
 * it. The file is checked against the host when the group is made (cgroup.ts).
 */
export function parseCgroupSetting(s: string, option = '--cgroup'): CgroupSetting {
  // hugetlb's files name the page size: hugetlb.2MB.max, hugetlb.1GB.limit_in_bytes.
  const m = /^([a-z_]+\.[A-Za-z0-9_.]+)=(.+)$/.exec(s)
  if (!m)
    throw new JailUsageError(
      `${option} "${s}": expected <controller>.<file>=<value>, e.g. memory.limit_in_bytes=512MiB`,
    )
  const [file, value] = [m[1]!, m[2]!]
  if (SIZED.test(file) && value !== 'max' && value !== '-1' && parseSize(value) === undefined)
    throw new JailUsageError(`${option} ${file}=${value}: not a size (e.g. 512MiB, max)`)
  return { file, value, ...(option === '--cgroup' ? {} : { option }) }
}

/** Control files that take sizes: memory.* and hugetlb.* (cgroup.ts writes them in bytes). */
export const SIZED = /^(memory|hugetlb)\./

/** A network namespace file to join (ip-netns(8): /var/run/netns/<name>), as `option` gives it. */
export function parseNetns(path: string, option = '--netns'): string {
  const netns = resolve(path)
  checkPlanPath(option, netns)
  if (!existsSync(netns))
    throw new JailUsageError(
      `${option} ${netns}: there is no such file (a network namespace: ip netns add <name>)`,
    )
  return netns
}

/**
 * The rlimits `<name>=<soft>[:<hard>]` given as `option` (--rlimit; --jail-rlimit for the default
 * jail), after the default nofile=2048 (Firecracker's); a later one of a name replaces an earlier.
 */
export function parseRlimits(list: readonly string[], option = '--rlimit'): RlimitSetting[] {
  const rlimits: RlimitSetting[] = [{ name: 'nofile', soft: '2048', hard: '2048' }]
  for (const s of list) {
    const m = /^([a-z]+)=(\d+|unlimited)(?::(\d+|unlimited))?$/.exec(s)
    if (!m || !RLIMITS.has(m[1]!))
      throw new JailUsageError(
        `${option} "${s}": expected <name>=<n>[:<hard>] with a name among ${[...RLIMITS].join(', ')}`,
      )
    const soft = m[2]!
    const hard = m[3] ?? soft
    // setrlimit(2): EINVAL when the soft limit exceeds the hard one; say so before anything is made.
    if (hard !== 'unlimited' && (soft === 'unlimited' || BigInt(soft) > BigInt(hard)))
      throw new JailUsageError(`${option} "${s}": the soft limit ${soft} is above the hard limit ${hard}`)
    const i = rlimits.findIndex((r) => r.name === m[1])
    if (i >= 0) rlimits.splice(i, 1)
    rlimits.push({ name: m[1]!, soft, hard })
  }
  return rlimits
}

export function parseJailArgs(argv: readonly string[]): JailOptions {
  const dash = argv.indexOf('--')
  if (dash < 0) throw new JailUsageError('vmm jail needs the VMM command after `--` (-- run <manifest>)')
  const { values, positionals } = parseArgs({
    args: argv.slice(0, dash),
    allowPositionals: true,
    options: {
      id: { type: 'string' },
      uid: { type: 'string' },
      gid: { type: 'string' },
      'chroot-base': { type: 'string', default: '/srv/vmm-jail' },
      netns: { type: 'string' },
      cgroup: { type: 'string', multiple: true, default: [] },
      'parent-cgroup': { type: 'string' },
      rlimit: { type: 'string', multiple: true, default: [] },
      daemonize: { type: 'boolean', default: false },
      'allow-root': { type: 'boolean', default: false },
    },
  })
  if (positionals.length > 0)
    throw new JailUsageError(`unexpected arguments before --: ${positionals.join(' ')}`)
  if (values.id === undefined) throw new JailUsageError('vmm jail needs --id')
  if (!ID.test(values.id))
    throw new JailUsageError(`--id "${values.id}": use letters, digits, _ and - (at most 64 characters)`)
  const uid = id('uid', values.uid)
  const gid = id('gid', values.gid)
  if ((uid === 0 || gid === 0) && !values['allow-root'])
    throw new JailUsageError(
      `--uid ${uid} --gid ${gid}: the VMM would keep root's privileges in its jail; give an unprivileged uid and gid (or --allow-root)`,
    )
  const cgroups = values.cgroup.map((s) => parseCgroupSetting(s))
  const rlimits = parseRlimits(values.rlimit)
  const [command, target, ...vmmArgs] = argv.slice(dash + 1)
  if (command !== 'run' && command !== 'restore')
    throw new JailUsageError(
      `vmm jail runs \`run <manifest>\` or \`restore <dir>\` after --, not "${command ?? ''}"`,
    )
  if (target === undefined || target.startsWith('-'))
    throw new JailUsageError(
      `vmm jail -- ${command} needs a ${command === 'run' ? 'manifest file' : 'snapshot directory'}`,
    )
  const own = vmmArgs.find((a) => /^--jail-(cgroup|rlimit|netns)(=|$)/.test(a))
  if (own !== undefined)
    throw new JailUsageError(
      `${own.split('=')[0]} after -- limits vmm run's default jail; vmm jail takes ${own.split('=')[0]!.replace('jail-', '')} before --`,
    )
  // The VMM's own options, parsed only to find the paths and modules the jail must hold; the
  // VMM checks them again. --qmp is made absolute, as the VMM in the jail runs elsewhere.
  const vmm = parseArgs({
    args: vmmArgs,
    allowPositionals: true,
    strict: false,
    options: { qmp: { type: 'string' }, hypervisor: { type: 'string' } },
  }).values
  const qmp = typeof vmm.qmp === 'string' ? resolve(vmm.qmp) : undefined
  const args = [...vmmArgs]
  const q = args.indexOf('--qmp')
  if (qmp !== undefined && q >= 0) args[q + 1] = qmp
  else if (qmp !== undefined) args[args.findIndex((a) => a.startsWith('--qmp='))] = `--qmp=${qmp}`
  const netns = values.netns === undefined ? undefined : parseNetns(values.netns)
  const chrootBase = resolve(values['chroot-base'])
  if (!isAbsolute(chrootBase)) throw new JailUsageError('--chroot-base must be a path')
  for (const [what, p] of [
    ['--chroot-base', chrootBase],
    ['--qmp', qmp],
  ] as const)
    if (p !== undefined) checkPlanPath(what, p)
  return {
    id: values.id,
    uid,
    gid,
    chrootBase,
    ...(netns === undefined ? {} : { netns }),
    cgroups,
    ...(values['parent-cgroup'] === undefined ? {} : { parentCgroup: values['parent-cgroup'] }),
    rlimits,
    daemonize: values.daemonize,
    command,
    target: resolve(target),
    vmmArgs: args,
    ...(qmp === undefined ? {} : { qmp }),
    ...(typeof vmm.hypervisor === 'string' ? { hypervisor: vmm.hypervisor } : {}),
  }
}
