// `vmm run <manifest>` and `vmm restore <dir>` run jailed unless --no-jail (issue 17: confinement on
// by default). This is the supervisor's side: it picks the jail's name, ids and place, and runs the
// same jail as `vmm jail` (jail.ts) in its drop-late form: the VMM starts as root inside the jail's
// namespaces and root, builds its machine with root's access to the files its manifest names (so no
// disk image needs a chown), then drops to the jail's ids itself (drop.ts) before the first guest
// instruction, with no_new_privs and seccomp on (QEMU's -runas, StratoVirt's ozone).
//
// The choices, and why:
//   - ids: one uid and gid per VM, JAIL_ID_BASE + this process's pid. Unique among the VMs running
//     now (a pid is), so two VMMs never share a uid even where their jails share a directory (two
//     VMs with their sockets in one directory): one taken over cannot unlink, connect to or signal
//     what the other made after its drop, nor use up the other's per-uid kernel limits
//     (RLIMIT_NPROC, inotify instances, locked memory), which separate pid namespaces alone do not
//     give. The base 0x70000000 (1879048192) is in the range systemd leaves unused
//     (docs/UIDS-GIDS.md: above the container range, below 2^31): no user or container has it.
//   - name: the manifest's (or snapshot directory's) base name and 8 random hex digits, unique per
//     run (a leftover jail directory never blocks the next run); the hostname the guest's VMM sees.
//   - place: /run/vmm-jail/<name>/root (a jail a SIGKILL left is removed by the next jailed run,
//     owner.ts; /run is a tmpfs besides, so it goes at boot at the latest).
//   - not root (a user in the kvm group): the jail needs root (namespaces, mounts, ids to drop to),
//     and the VMM already runs without privilege, so it runs unconfined but for seccomp, with a
//     warning naming --no-jail (which silences it); refusing would break every unprivileged user of
//     `vmm run` for a jail whose first job, dropping root, has nothing to drop. As root, a jail that
//     cannot be made refuses the run, naming --no-jail: root unconfined is never silent.
import { randomBytes } from 'node:crypto'
import { basename } from 'node:path'
import { EXIT_HOST_FAILURE, EXIT_USAGE } from '../exit-codes.js'
import {
  type JailOptions,
  JailUsageError,
  parseCgroupSetting,
  parseJailArgs,
  parseNetns,
  parseRlimits,
} from './args.js'
import { runInJail } from './jail.js'

export const JAIL_ID_BASE = 0x70000000
export const DEFAULT_CHROOT_BASE = '/run/vmm-jail'

/** The jail's name for `target`: its base name (letters, digits, _ and -) and 8 random hex digits. */
export function defaultJailName(target: string): string {
  const stem = basename(target)
    .replace(/\.(ya?ml|json)$/, '')
    .replace(/[^A-Za-z0-9_-]/g, '_')
    .slice(0, 40)
  return `${stem || 'vm'}-${randomBytes(4).toString('hex')}`
}

/**
 * The default jail's limits as `vmm run`/`vmm restore` take them: --jail-cgroup, --jail-rlimit,
 * --jail-netns, with vmm jail's meaning (its --cgroup, --rlimit, --netns) and checks.
 */
export interface DefaultJailLimits {
  readonly cgroups: readonly string[]
  readonly rlimits: readonly string[]
  readonly netns?: string | undefined
}

/** The option names, for "cannot go with" errors. */
export const JAIL_LIMIT_OPTIONS = ['--jail-cgroup', '--jail-rlimit', '--jail-netns'] as const

/** Whether any limit was asked for. */
export const anyLimit = (l: DefaultJailLimits) =>
  l.cgroups.length > 0 || l.rlimits.length > 0 || l.netns !== undefined

/**
 * Runs `vmm <command> <target> <options>` in the default jail and returns its exit status, or
 * undefined when it is to run unconfined here (not root; the warning is written).
 */
export async function runDefaultJail(
  command: 'run' | 'restore',
  target: string,
  options: readonly string[],
  limits: DefaultJailLimits = { cgroups: [], rlimits: [] },
): Promise<number | undefined> {
  let asked: Pick<JailOptions, 'cgroups' | 'rlimits' | 'netns'>
  try {
    // Checked first, as vmm jail checks its own: bad input makes nothing.
    const netns = limits.netns === undefined ? undefined : parseNetns(limits.netns, '--jail-netns')
    asked = {
      cgroups: limits.cgroups.map((c) => parseCgroupSetting(c, '--jail-cgroup')),
      rlimits: parseRlimits(limits.rlimits, '--jail-rlimit'),
      ...(netns === undefined ? {} : { netns }),
    }
    if (anyLimit(limits) && process.getuid?.() !== 0)
      throw new JailUsageError(
        `${JAIL_LIMIT_OPTIONS.join(', ')} limit the default jail, which needs root (this is uid ${process.getuid?.()}): run as root, or without them`,
      )
  } catch (e) {
    if (!(e instanceof JailUsageError)) throw e
    process.stderr.write(`vmm: ${e.message}\n`)
    return EXIT_USAGE
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      `vmm: not confined: the default jail needs root (namespaces, a root of its own, ids to drop to); running as uid ${process.getuid?.()} with seccomp only (--no-jail says this is meant and silences this)\n`,
    )
    return undefined
  }
  const id = JAIL_ID_BASE + process.pid
  try {
    const o = parseJailArgs([
      '--id',
      defaultJailName(target),
      '--uid',
      String(id),
      '--gid',
      String(id),
      '--chroot-base',
      DEFAULT_CHROOT_BASE,
      '--',
      command,
      target,
      ...options,
    ])
    return await runInJail({ ...o, ...asked, dropLate: true }, [])
  } catch (e) {
    if (!(e instanceof JailUsageError) && !/vmm-jail is not built/.test((e as Error).message)) throw e
    // A limit the host refused (a control file it lacks): the caller's input, not the jail's fault.
    if (/^--jail-/.test((e as Error).message)) {
      process.stderr.write(`vmm: ${(e as Error).message}\n`)
      return EXIT_USAGE
    }
    process.stderr.write(
      `vmm: cannot confine the VMM in its default jail: ${(e as Error).message}\n(vmm ${command} --no-jail runs it unconfined)\n`,
    )
    return EXIT_HOST_FAILURE
  }
}
