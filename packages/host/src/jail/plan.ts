// The plan the native helper (src/native/vmm-jail.c) carries out: one record per
// line, TAB-separated fields (its header comment lists them). Built from what the manifest names
// and what the VMM needs; the helper does it in its fixed order, whatever the order here.
import { existsSync, statSync } from 'node:fs'
import { checkPlanPath } from './errors.js'
import type { Bind, Link } from './runtime.js'

export interface Device {
  readonly path: string
  readonly major: number
  readonly minor: number
  readonly mode: number
  /** Owned by the jail's uid/gid (kvm, tun, userfaultfd), else root's (null, urandom: 0666). */
  readonly owned: boolean
}

/**
 * The capabilities a VMM with a writable share keeps (it stays root in its jail; capabilities(7)
 * numbers): the 9p server makes the guest's owners and modes on the share (CHOWN; FOWNER for
 * chmod/utimes of files it does not own; FSETID so a chown or write keeps set-group-ID bits as
 * the guest set them; DAC_OVERRIDE and DAC_READ_SEARCH to read and write files of every mode, as
 * the guest's root does; MKNOD for the device nodes a container's tree holds, inert on the jail's
 * nodev mounts). NET_ADMIN is added only for a machine with a TAP (TUNSETIFF). Not kept: SYS_ADMIN
 * (mount, setns, pivot_root), SETUID/SETGID, SYS_PTRACE, KILL, SYS_MODULE, NET_RAW and the rest.
 */
export const SHARE_CAPS = { CHOWN: 0, DAC_OVERRIDE: 1, DAC_READ_SEARCH: 2, FOWNER: 3, FSETID: 4, MKNOD: 27 }
export const CAP_NET_ADMIN = 12

export interface JailPlan {
  readonly root: string
  readonly uid: number
  readonly gid: number
  readonly hostname: string
  readonly binds: readonly Bind[]
  readonly links: readonly Link[]
  readonly devices: readonly Device[]
  readonly cgroupDirs: readonly string[]
  readonly rlimits: readonly { name: string; soft: string; hard: string }[]
  readonly netns?: string
  readonly cwd: string
  readonly env: readonly string[]
  /** The VMM drops to uid/gid itself, after building its machine as root in the jail (@vmm/cli's jail/default.ts). */
  readonly dropLate?: boolean
  /** drop-late with a writable share: the VMM keeps root with only these capabilities. */
  readonly caps?: readonly number[]
  /** The executable, then argv (argv[0] first). */
  readonly exec: readonly string[]
}

/** The device nodes the VMM may open, as the host has them (Firecracker's set plus /dev/null). */
const DEVICES: readonly { path: string; owned: boolean; mode: number }[] = [
  { path: '/dev/kvm', owned: true, mode: 0o600 },
  { path: '/dev/net/tun', owned: true, mode: 0o600 },
  { path: '/dev/userfaultfd', owned: true, mode: 0o600 },
  { path: '/dev/urandom', owned: false, mode: 0o666 },
  { path: '/dev/null', owned: false, mode: 0o666 },
]

export function hostDevices(): Device[] {
  const out: Device[] = []
  for (const d of DEVICES) {
    if (!existsSync(d.path)) continue
    const st = statSync(d.path, { bigint: true })
    if (!st.isCharacterDevice()) continue
    // glibc's gnu_dev_major/minor (sys/sysmacros.h): the 64-bit dev_t's split fields.
    const r = st.rdev
    const major = Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn))
    const minor = Number((r & 0xffn) | ((r >> 12n) & ~0xffn))
    out.push({ ...d, major, minor })
  }
  return out
}

/** The variables the jailed VMM gets from our environment; everything else is dropped. */
export const PASSED_ENV = [
  'TERM',
  'TZ',
  'LANG',
  'LC_ALL',
  'VMM_HYPERVISOR',
  'VMM_TRACE_EMULATION',
  'VMM_RESTORE_TIMINGS',
  'VMM_SECCOMP_RECORD_ALL',
] as const

/**
 * The jailed VMM's environment: PASSED_ENV where set, HOME=/ (there is no passwd in the jail),
 * VMM_JAILED=1 (so its `vmm run` does not jail itself again) and VMM_CACHE_DIR: `cacheDir` (the
 * caches bound in read-only, runtime-files.ts) or off.
 */
export function jailEnv(env: NodeJS.ProcessEnv = process.env, cacheDir?: string): string[] {
  const out = ['HOME=/', `VMM_CACHE_DIR=${cacheDir ?? 'off'}`, 'VMM_JAILED=1']
  for (const k of PASSED_ENV) if (env[k] !== undefined && !/[\t\n]/.test(env[k]!)) out.push(`${k}=${env[k]}`)
  return out
}

const under = (path: string, dir: string) => path === dir || path.startsWith(dir === '/' ? '/' : `${dir}/`)

/**
 * Binds sorted so a parent comes before what is bound below it, one per target (read-write wins
 * over read-only for the same place), without those an identity bind of a directory above already
 * shows (same source path, same access, same idmap): a package directory inside another, a library twice.
 */
export function tidyBinds(binds: readonly Bind[]): Bind[] {
  const byTarget = new Map<string, Bind>()
  for (const b of binds) {
    const old = byTarget.get(b.target)
    if (!old || (old.readOnly && !b.readOnly)) byTarget.set(b.target, b)
  }
  const sorted = [...byTarget.values()].sort((a, b) => (a.target < b.target ? -1 : 1))
  const kept: Bind[] = []
  for (const b of sorted) {
    const covered = kept.some(
      (k) =>
        k.source === k.target &&
        k.readOnly === b.readOnly &&
        k.idmap?.uid === b.idmap?.uid &&
        k.idmap?.gid === b.idmap?.gid &&
        b.source === b.target &&
        under(b.target, k.target) &&
        statSync(k.source).isDirectory(),
    )
    if (!covered) kept.push(b)
  }
  return kept
}

/** Links not already inside an identity-bound directory (where the host's link shows anyway). */
export function tidyLinks(links: readonly Link[], binds: readonly Bind[]): Link[] {
  return links.filter(
    (l) => !binds.some((b) => b.source === b.target && under(l.path, b.target) && l.path !== b.target),
  )
}

export function planText(p: JailPlan): string {
  const lines: string[][] = [
    ['root', p.root],
    ['ids', String(p.uid), String(p.gid)],
    ['hostname', p.hostname],
  ]
  for (const r of p.rlimits) lines.push(['rlimit', r.name, r.soft, r.hard])
  for (const d of p.cgroupDirs) lines.push(['cgroup', `${d}/cgroup.procs`])
  if (p.netns !== undefined) lines.push(['netns', p.netns])
  for (const b of p.binds)
    lines.push([
      'bind',
      b.source,
      b.target,
      b.readOnly ? 'ro' : 'rw',
      ...(b.idmap ? ['idmap', String(b.idmap.uid), String(b.idmap.gid)] : []),
    ])
  for (const l of p.links) lines.push(['symlink', l.target, l.path])
  for (const d of p.devices)
    lines.push([
      'dev',
      d.path,
      String(d.major),
      String(d.minor),
      d.mode.toString(8),
      d.owned ? 'owned' : 'root',
    ])
  lines.push(['proc'], ['cwd', p.cwd])
  if (p.dropLate) lines.push(['drop-late'])
  if (p.caps) lines.push(['caps', ...p.caps.map(String)])
  for (const e of p.env) lines.push(['env', e])
  lines.push(['exec', ...p.exec])
  for (const l of lines) for (const f of l.slice(1)) checkPlanPath(l[0]!, f)
  return `${lines.map((l) => l.join('\t')).join('\n')}\n`
}
