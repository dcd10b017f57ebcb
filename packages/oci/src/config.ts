// config.json of a bundle (OCI runtime-spec config.md), read and checked before anything is made:
// every error names the field and what is wrong with it, and a field this runtime cannot honour
// in a microVM is refused by name rather than silently ignored. Fields that only shape a host
// process's confinement (seccomp, capabilities, apparmor, maskedPaths, cgroupsPath...) are
// accepted: the VM is the confinement, and Docker always sends them.
import { existsSync, readFileSync, statSync } from 'node:fs'
import { isAbsolute, join, resolve } from 'node:path'
import { OciError } from './errors.js'

export interface Hook {
  path: string
  args?: string[]
  env?: string[]
  timeout?: number
}
export type HookName =
  | 'prestart'
  | 'createRuntime'
  | 'createContainer'
  | 'startContainer'
  | 'poststart'
  | 'poststop'
export const HOOK_NAMES: readonly HookName[] = [
  'prestart',
  'createRuntime',
  'createContainer',
  'startContainer',
  'poststart',
  'poststop',
]

export interface Mount {
  destination: string
  source?: string
  type?: string
  options?: string[]
}

export interface Rlimit {
  type: string
  soft: number
  hard: number
}

export interface Process {
  terminal?: boolean
  consoleSize?: { height: number; width: number }
  user: { uid: number; gid: number; umask?: number; additionalGids?: number[] }
  args: string[]
  env?: string[]
  cwd: string
  rlimits?: Rlimit[]
  noNewPrivileges?: boolean
}

export interface Resources {
  memory?: { limit?: number }
  cpu?: { quota?: number; period?: number; shares?: number; cpus?: string }
}

export interface Spec {
  ociVersion: string
  root: { path: string; readonly?: boolean }
  process: Process
  hostname?: string
  mounts?: Mount[]
  hooks?: Partial<Record<HookName, Hook[]>>
  annotations?: Record<string, string>
  linux?: {
    resources?: Resources
    namespaces?: { type: string; path?: string }[]
    devices?: unknown[]
    uidMappings?: unknown[]
    [k: string]: unknown
  }
}

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string')
const isUint = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0

function need(ok: boolean, field: string, what: string): void {
  if (!ok) throw new OciError(`config.json: ${field} ${what}`)
}

/** The RLIMIT_* numbers of Linux x86-64 (include/uapi/asm-generic/resource.h). */
export const RLIMITS: Record<string, number> = {
  RLIMIT_CPU: 0,
  RLIMIT_FSIZE: 1,
  RLIMIT_DATA: 2,
  RLIMIT_STACK: 3,
  RLIMIT_CORE: 4,
  RLIMIT_RSS: 5,
  RLIMIT_NPROC: 6,
  RLIMIT_NOFILE: 7,
  RLIMIT_MEMLOCK: 8,
  RLIMIT_AS: 9,
  RLIMIT_LOCKS: 10,
  RLIMIT_SIGPENDING: 11,
  RLIMIT_MSGQUEUE: 12,
  RLIMIT_NICE: 13,
  RLIMIT_RTPRIO: 14,
  RLIMIT_RTTIME: 15,
}

/** config.md "Process": also the shape of `exec --process` files. */
export function checkProcess(p: unknown, where = 'process'): Process {
  need(isObject(p), where, 'must be an object')
  const proc = p as Json
  need(
    isStringArray(proc.args) && proc.args.length > 0,
    `${where}.args`,
    'must be a non-empty array of strings',
  )
  need(typeof proc.cwd === 'string', `${where}.cwd`, 'is required (a string)')
  need(isAbsolute(proc.cwd as string), `${where}.cwd`, `must be an absolute path, not "${proc.cwd}"`)
  need(proc.env === undefined || isStringArray(proc.env), `${where}.env`, 'must be an array of strings')
  need(
    proc.terminal === undefined || typeof proc.terminal === 'boolean',
    `${where}.terminal`,
    'must be a boolean',
  )
  const user = proc.user ?? { uid: 0, gid: 0 }
  need(isObject(user), `${where}.user`, 'must be an object')
  const u = user as Json
  need(isUint(u.uid), `${where}.user.uid`, 'must be a non-negative integer')
  need(isUint(u.gid), `${where}.user.gid`, 'must be a non-negative integer')
  need(
    u.additionalGids === undefined || (Array.isArray(u.additionalGids) && u.additionalGids.every(isUint)),
    `${where}.user.additionalGids`,
    'must be an array of non-negative integers',
  )
  need(u.username === undefined, `${where}.user.username`, 'is for Windows containers; not supported')
  if (proc.rlimits !== undefined) {
    need(Array.isArray(proc.rlimits), `${where}.rlimits`, 'must be an array')
    for (const [i, r] of (proc.rlimits as unknown[]).entries()) {
      need(isObject(r), `${where}.rlimits[${i}]`, 'must be an object')
      const rl = r as Json
      need(
        typeof rl.type === 'string' && rl.type in RLIMITS,
        `${where}.rlimits[${i}].type`,
        `must be one of RLIMIT_CPU ... RLIMIT_RTTIME, not "${rl.type}"`,
      )
      need(isUint(rl.soft) && isUint(rl.hard), `${where}.rlimits[${i}]`, 'needs soft and hard as integers')
    }
  }
  return proc as unknown as Process
}

/** Reads and checks `<bundle>/config.json`; the root path comes back absolute. */
export function readSpec(bundle: string): Spec {
  const file = join(bundle, 'config.json')
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    throw new OciError(
      code === 'ENOENT'
        ? `JSON specification file config.json not found in ${bundle}`
        : `reading ${file}: ${code}`,
    )
  }
  let spec: unknown
  try {
    spec = JSON.parse(text)
  } catch (e) {
    throw new OciError(`config.json: malformed JSON: ${(e as Error).message}`)
  }
  return checkSpec(spec, bundle)
}

export function checkSpec(spec: unknown, bundle: string): Spec {
  need(isObject(spec), 'the document', 'must be a JSON object')
  const s = spec as Json
  need(typeof s.ociVersion === 'string', 'ociVersion', 'is required (a string)')
  need(isObject(s.root) && typeof (s.root as Json).path === 'string', 'root.path', 'is required (a string)')
  const root = s.root as Json
  const rootPath = resolve(bundle, root.path as string)
  if (!existsSync(rootPath)) throw new OciError(`rootfs (${JSON.stringify(rootPath)}) does not exist`)
  need(statSync(rootPath).isDirectory(), 'root.path', `(${rootPath}) is not a directory`)
  checkProcess(s.process)
  need(s.hostname === undefined || typeof s.hostname === 'string', 'hostname', 'must be a string')
  if (s.mounts !== undefined) {
    need(Array.isArray(s.mounts), 'mounts', 'must be an array')
    for (const [i, m] of (s.mounts as unknown[]).entries()) {
      need(isObject(m), `mounts[${i}]`, 'must be an object')
      const mount = m as Json
      need(
        typeof mount.destination === 'string' && isAbsolute(mount.destination),
        `mounts[${i}].destination`,
        'must be an absolute path',
      )
      need(
        mount.options === undefined || isStringArray(mount.options),
        `mounts[${i}].options`,
        'must be strings',
      )
    }
  }
  if (s.hooks !== undefined) {
    need(isObject(s.hooks), 'hooks', 'must be an object')
    for (const [name, list] of Object.entries(s.hooks as Json)) {
      need(
        (HOOK_NAMES as string[]).includes(name),
        `hooks.${name}`,
        `is not a hook (${HOOK_NAMES.join(', ')})`,
      )
      need(Array.isArray(list), `hooks.${name}`, 'must be an array')
      for (const [i, h] of (list as unknown[]).entries()) {
        need(isObject(h) && typeof h.path === 'string', `hooks.${name}[${i}].path`, 'is required (a string)')
        need(isAbsolute((h as Json).path as string), `hooks.${name}[${i}].path`, 'must be an absolute path')
      }
    }
  }
  for (const field of ['windows', 'solaris', 'vm', 'zos'])
    need(
      s[field] === undefined,
      field,
      'is not supported by this runtime (Linux containers in a microVM only)',
    )
  if (s.linux !== undefined) {
    need(isObject(s.linux), 'linux', 'must be an object')
    const linux = s.linux as Json
    need(
      !Array.isArray(linux.devices) || linux.devices.length === 0,
      'linux.devices',
      'is not supported: the microVM has its own /dev (devtmpfs); host devices cannot be passed in',
    )
    need(
      !Array.isArray(linux.uidMappings) || linux.uidMappings.length === 0,
      'linux.uidMappings',
      'is not supported (user namespaces)',
    )
    need(linux.intelRdt === undefined, 'linux.intelRdt', 'is not supported')
    // A network namespace path is joined by connecting the guest to it (network.ts); a PID
    // namespace of the host cannot hold a process of the guest's kernel.
    for (const ns of Array.isArray(linux.namespaces) ? linux.namespaces : []) {
      need(
        !(isObject(ns) && ns.type === 'pid' && typeof ns.path === 'string'),
        'linux.namespaces',
        `joins the PID namespace ${(ns as Json).path}: a process in a microVM cannot join a host PID namespace`,
      )
    }
  }
  const out = s as unknown as Spec
  out.root = { ...(root as Spec['root']), path: rootPath }
  return out
}

export interface VmSize {
  vcpus: number
  memoryMiB: number
}

export const DEFAULT_SIZE: VmSize = { vcpus: 1, memoryMiB: 256 }
/** The container guest's kernel and agent need about this much before the container's own use. */
export const MIN_MEMORY_MIB = 64
export const MAX_VCPUS = 8

/**
 * vCPUs and RAM from linux.resources (config-linux.md "CPU", "Memory"): the CFS quota over its
 * period rounded up (else the cpuset's size), and the memory limit rounded up to a MiB.
 */
export function vmSize(resources: Resources | undefined): VmSize {
  let vcpus = DEFAULT_SIZE.vcpus
  const cpu = resources?.cpu
  if (cpu?.quota && cpu.quota > 0)
    vcpus = Math.ceil(cpu.quota / (cpu.period && cpu.period > 0 ? cpu.period : 100_000))
  else if (cpu?.cpus) vcpus = cpusetSize(cpu.cpus)
  let memoryMiB = DEFAULT_SIZE.memoryMiB
  const limit = resources?.memory?.limit
  if (limit && limit > 0) memoryMiB = Math.max(MIN_MEMORY_MIB, Math.ceil(limit / 2 ** 20))
  return { vcpus: Math.min(MAX_VCPUS, Math.max(1, vcpus)), memoryMiB }
}

function cpusetSize(set: string): number {
  let n = 0
  for (const part of set.split(',')) {
    const [a, b] = part.split('-').map((x) => Number.parseInt(x, 10))
    if (a === undefined || Number.isNaN(a)) continue
    n += b === undefined || Number.isNaN(b) ? 1 : Math.max(0, b - a + 1)
  }
  return n || 1
}
