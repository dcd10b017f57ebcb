// The sandbox in a jail (issue 17: the OCI runtime's VM processes confined as `vmm run`'s are):
// `create` starts vmm-jail (@vmm/host's helper) rather than the sandbox itself, and the sandbox is
// exec'd inside, in the drop-late form of `vmm run`'s default jail
// (packages/cli/src/jail/default.ts): new mount, pid, IPC and UTS namespaces, a root of its own that holds only node, the runtime's
// packages, the guest's kernel and initrd, the template, the container's state and socket
// directories and its shared directories; it builds the VM as root there, then, before the guest's
// first instruction, drops to an unprivileged uid of its own (no capabilities, no_new_privs) or,
// when it serves shares over virtio-9p (every container has its rootfs), keeps root with only the
// capabilities the 9p servers need: a writable share (a container's rootfs usually is: its server
// makes the guest's owners and modes on the host tree) those of `vmm run`'s writable share
// (SHARE_CAPS: CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, MKNOD), read-only shares only
// DAC_READ_SEARCH (an image's root-only files, /etc/shadow or /root, stay readable to the guest's
// root, as without the jail; `vmm run`'s drop to a uid would hide them). seccomp follows.
// The pid containerd waits for is vmm-jail's supervisor, which passes on the signals the sandbox
// forwards and exits with the sandbox's status; SIGKILL of it ends the jail (the init and the
// sandbox die with it: PR_SET_PDEATHSIG, then the pid namespace's end).
//
// The choices, and why:
//   - ids: OCI_JAIL_ID_BASE + 24 random bits, taken by making the jail directory
//     /run/vmm-jail/oci-<uid> (mkdir is atomic: two sandboxes never share a uid; `vmm run`'s ids,
//     JAIL_ID_BASE + pid, stay below 0x70400000). A container outlives the `create` that made it,
//     so create's pid, reusable at once, cannot name it.
//   - the open files a sandbox is given (its status pipe, the TAP made in the container's
//     network namespace, the pty's slave) are passed through vmm-jail's `fd` records: the jail's
//     /dev has no /dev/pts and the VMM keeps no CAP_NET_ADMIN, so neither could be opened inside.
//   - vmm-jail's own messages go to sandbox.log too (`log`): with a terminal, its stderr is /dev/null.
//   - as `vmm run`: not root means unconfined (the jail needs root) with a debug line saying so;
//     `--no-jail` or VMM_OCI_JAIL=0 turns it off, and a jail that cannot be made fails the create.
//   - left unjailed: the template's build (template-build.ts), a guest the runtime made itself
//     (its kernel, its agent) that never runs container code, inside `create`.
import { randomInt } from 'node:crypto'
import { mkdirSync, readFileSync, realpathSync, rmdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Bind, Link } from '@vmm/host/jail'
import { OciError } from './errors.js'
import type { SandboxConfig } from './sandbox-config.js'

export const OCI_JAIL_ID_BASE = 0x71000000
export const OCI_JAIL_BASE = '/run/vmm-jail'

/** What delete must undo, kept in sandbox.json. */
export interface SandboxJail {
  /** /run/vmm-jail/oci-<uid>: made by create, holding the (empty) root. */
  dir: string
  uid: number
  gid: number
}

/** Why the sandbox runs unjailed here, or undefined when it is to be jailed. */
export function whyNoJail(
  noJail: boolean | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (noJail) return 'the runtime was called with --no-jail'
  if (env.VMM_OCI_JAIL === '0') return 'VMM_OCI_JAIL=0'
  if (process.getuid?.() !== 0)
    return `not root (uid ${process.getuid?.()}): the jail needs namespaces, a root of its own and ids to drop to`
  return undefined
}

/** The jail directory and the uid/gid that goes with it, taken atomically (see the header). */
export function takeJail(base = OCI_JAIL_BASE): SandboxJail {
  mkdirSync(base, { recursive: true, mode: 0o755 })
  for (let i = 0; i < 16; i++) {
    const uid = OCI_JAIL_ID_BASE + randomInt(1 << 24)
    const dir = join(base, `oci-${uid}`)
    try {
      mkdirSync(dir, { mode: 0o700 })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue
      throw new OciError(`making the sandbox's jail directory ${dir}: ${(e as Error).message}`)
    }
    mkdirSync(join(dir, 'root'), { mode: 0o755 })
    return { dir, uid, gid: uid }
  }
  throw new OciError(`no free jail directory under ${base} after 16 tries`)
}

/** rmdir of the jail's root and directory (never a recursive delete: they hold nothing of ours). */
export function removeJail(jail: SandboxJail): string[] {
  const left: string[] = []
  for (const d of [join(jail.dir, 'root'), jail.dir]) {
    try {
      rmdirSync(d)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code !== 'ENOENT') left.push(`${d} (${code})`)
    }
  }
  return left
}

export interface SandboxJailInput {
  jail: SandboxJail
  /** The container's state directory (sandbox.json, its log, the status, the console log). */
  stateDir: string
  socketDir: string
  /** The sandbox script and its argv after it. */
  script: string
  args: readonly string[]
  config: SandboxConfig
  /** Extra fds after the status pipe, as the sandbox sees them: 4 (the TAP), 5 and 6 (the pty). */
  extraFds: number
  /** The sandbox's fd that is the container's terminal, to make its controlling terminal. */
  ctty?: number
}

const under = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`)

/**
 * The plan vmm-jail carries out for the sandbox. Its fds: the status pipe arrives as 4 and is the
 * sandbox's 3; each extra fd arrives one above where the sandbox has it (5 -> 4, ...).
 */
export async function sandboxPlan(input: SandboxJailInput): Promise<string> {
  const host = await import('@vmm/host/jail')
  const { jail, config } = input
  const plan = config.plan
  // Which ids the sandbox has once its VM is built (see the header): an unprivileged uid only when
  // it serves no share; else root, with only the capabilities its 9p servers need.
  const writableShares = plan.shares.filter((s) => !s.readonly)
  const drops = plan.shares.length === 0
  const caps = writableShares.length > 0 ? Object.values(host.SHARE_CAPS) : [host.SHARE_CAPS.DAC_READ_SEARCH]
  const binds: Bind[] = []
  const links: Link[] = []
  const file = (path: string) => binds.push({ source: realpathSync(path), target: path, readOnly: true })
  // The state and socket directories: the sandbox writes there after its drop, so, when it drops,
  // they are idmapped (their owner, root, is the sandbox's uid to it: vmm-jail-idmap.c).
  const own = (dir: string) => {
    const st = statSync(dir)
    binds.push({
      source: realpathSync(dir),
      target: dir,
      readOnly: false,
      ...(drops ? { idmap: { uid: st.uid, gid: st.gid } } : {}),
    })
  }
  own(input.stateDir)
  own(input.socketDir)
  for (const p of [plan.vmlinux, plan.initrd]) if (!under(p, input.stateDir)) file(p)
  if (config.template) file(join(config.template.snapshot, '..'))
  for (const s of plan.shares)
    binds.push({ source: realpathSync(s.hostPath), target: s.hostPath, readOnly: s.readonly })

  const pkg = host.packageRoot(input.script)
  if (!pkg) throw new OciError(`the sandbox script ${input.script} is in no package`)
  const closure = host.packageClosure([pkg])
  for (const d of closure.dirs) binds.push({ source: d, target: d, readOnly: true })
  links.push(...closure.links)
  binds.push(...host.nodeRuntime(closure.dirs.flatMap(host.nativeAddons)))
  const extra = host.runtimeFiles(jail)
  const allBinds = host.tidyBinds([...binds, ...extra.binds])

  const drop = host.dropEnv(drops ? jail : { caps, shares: plan.shares.map((s) => `fs-${s.tag}.path`) })
  const text = host.planText({
    root: join(jail.dir, 'root'),
    uid: jail.uid,
    gid: jail.gid,
    hostname: `oci-${config.id}`.slice(0, 64),
    binds: allBinds,
    links: host.tidyLinks(links, allBinds),
    // Staying root (without DAC_OVERRIDE when its shares are read-only), it opens the device
    // nodes as their owner: they stay root's, not the jail uid's.
    devices: host.hostDevices().map((d) => (drops ? d : { ...d, owned: false })),
    cgroupDirs: [],
    rlimits: [],
    cwd: '/',
    env: [...host.jailEnv(process.env, extra.cacheDir), ...extra.env, drop],
    dropLate: true,
    ...(drops ? {} : { caps }),
    exec: [process.execPath, process.execPath, input.script, ...input.args],
  })
  const fds = ['fd\t4\t3']
  for (let i = 0; i < input.extraFds; i++) fds.push(`fd\t${5 + i}\t${4 + i}`)
  const more = [
    ...fds,
    'detached',
    `log\t${host.checkPlanPath('the log', join(input.stateDir, 'sandbox.log'))}`,
  ]
  if (input.ctty !== undefined) more.push(`ctty\t${input.ctty}`)
  // planText ends with the exec record; vmm-jail reads records in any order.
  return `${more.join('\n')}\n${text}`
}

/** The last message vmm-jail left in the sandbox's log, if any (why a jailed start failed). */
export function jailMessage(stateDir: string): string | undefined {
  try {
    const lines = readFileSync(join(stateDir, 'sandbox.log'), 'utf8').split('\n')
    return lines.reverse().find((l) => l.startsWith('vmm-jail: '))
  } catch {
    return undefined
  }
}
