// The default jail's last step, in the VMM itself (@vmm/cli's jail/default.ts, the OCI sandbox's
// sandbox-jail.ts; vmm-jail.c's drop-late): once the
// machine is built (it opened /dev/kvm, its disks, its memory file, TAPs and sockets as root in its
// jail) and before the guest's first instruction, the VMM takes the unprivileged ids the jail
// chose, as QEMU's -runas and StratoVirt's ozone do. @vmm/cli's seccomp.ts and the OCI sandbox call it
// just before the filters go on.
//
// Node's process.setgroups/setgid/setuid are glibc's setgroups(2)/setgid(2)/setuid(2) wrappers,
// which apply the change to every thread of the process (glibc's "setxid" broadcast; nptl(7):
// POSIX requires credentials to be process-wide), so the vCPU threads made during the build drop
// too. From uid 0 to a non-zero uid in all of real, effective and saved, the kernel clears the
// permitted, effective and ambient capability sets (capabilities(7), "Effect of user ID changes
// on capabilities"); no_new_privs was set by vmm-jail before exec. Each thread is then checked in
// /proc (the jail's own): a thread still root, or holding a capability, stops the run here.
import { readdirSync, readFileSync } from 'node:fs'

/**
 * The environment record that tells a drop-late VMM what dropIds is to do, as its jail's maker
 * (@vmm/cli's jail/jail.ts, @vmm/oci's sandbox-jail.ts) decided: drop to `ids`, or stay root with
 * only `caps` (capabilities(7) numbers) for the writable or read-only `shares` (component
 * properties, named in what dropIds reports).
 */
export function dropEnv(
  drop:
    | { readonly uid: number; readonly gid: number }
    | { readonly caps: readonly number[]; readonly shares: readonly string[] },
): string {
  if ('uid' in drop) return `VMM_JAIL_DROP=${drop.uid}:${drop.gid}`
  const mask = drop.caps.reduce((m, c) => m | (1n << BigInt(c)), 0n)
  return `VMM_JAIL_KEPT=${mask.toString(16)}:${drop.shares.join(',')}`
}

/** Whether the environment asks dropIds for a drop to an unprivileged uid (not a root that keeps capabilities). */
export const dropsToUid = (env: NodeJS.ProcessEnv = process.env): boolean => env.VMM_JAIL_DROP !== undefined

/** What was done, for --timings ("ids 1879053313:1879053313"), or undefined outside a default jail. */
export function dropIds(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.VMM_JAIL_KEPT !== undefined) return keptRoot(env.VMM_JAIL_KEPT)
  const spec = env.VMM_JAIL_DROP
  if (spec === undefined) return undefined
  const m = /^(\d+):(\d+)$/.exec(spec)
  if (!m || Number(m[1]) === 0 || Number(m[2]) === 0)
    throw new Error(
      `VMM_JAIL_DROP="${spec}": expected <uid>:<gid>, both unprivileged (set by vmm run's jail)`,
    )
  const uid = Number(m[1])
  const gid = Number(m[2])
  // Groups first, then the gid, then the uid: the first two need the privilege the last drops.
  process.setgroups?.([])
  process.setgid?.(gid)
  process.setuid?.(uid)
  for (const task of readdirSync('/proc/self/task')) {
    let status: string
    try {
      status = readFileSync(`/proc/self/task/${task}/status`, 'utf8')
    } catch {
      continue // a thread that ended meanwhile
    }
    const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(status)?.[1]?.trim()
    const ids = (name: string) => field(name)?.split(/\s+/).map(Number) ?? []
    const problem =
      ids('Uid').some((u) => u !== uid) || ids('Gid').some((g) => g !== gid)
        ? `its ids are Uid ${field('Uid')} Gid ${field('Gid')}`
        : (field('Groups') ?? '') !== ''
          ? `it keeps supplementary groups ${field('Groups')}`
          : ['CapEff', 'CapPrm', 'CapAmb'].some((c) => /[^0]/.test(field(c) ?? '0'))
            ? `it keeps capabilities (CapEff ${field('CapEff')}, CapPrm ${field('CapPrm')})`
            : field('NoNewPrivs') !== '1'
              ? 'no_new_privs is not set'
              : undefined
    if (problem)
      throw new Error(
        `the jail's drop to uid ${uid} gid ${gid} did not hold for thread ${task}: ${problem}; not starting the guest`,
      )
  }
  return `ids ${uid}:${gid}`
}

/**
 * A machine with a writable share (@vmm/cli's jail/jail.ts dropEnv, @vmm/oci's sandbox-jail.ts): the VMM stays root in its jail, with only the
 * capabilities vmm-jail left it. Checked here as the drop is: a thread holding more stops the run.
 */
function keptRoot(spec: string): string {
  const [mask = '', shares = ''] = spec.split(':')
  const allowed = BigInt(`0x${mask || '0'}`)
  for (const task of readdirSync('/proc/self/task')) {
    let status: string
    try {
      status = readFileSync(`/proc/self/task/${task}/status`, 'utf8')
    } catch {
      continue
    }
    for (const set of ['CapEff', 'CapPrm', 'CapBnd', 'CapInh', 'CapAmb']) {
      const v = BigInt(
        `0x${new RegExp(`^${set}:[ \\t]*([0-9a-f]+)$`, 'm').exec(status)?.[1] ?? 'ffffffffffffffff'}`,
      )
      if ((v & ~allowed) !== 0n)
        throw new Error(
          `the jail left thread ${task} ${set} ${v.toString(16)}, more than ${mask}; not starting the guest`,
        )
    }
  }
  return `root with capabilities ${mask} only (the writable share ${shares} needs them)`
}
