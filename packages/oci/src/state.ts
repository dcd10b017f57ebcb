// A container's state on the host, under `--root/<id>/`, so that every runtime call (a new
// process) finds it: state.json (written by create), status (written by the sandbox as the
// container moves between created, running and paused), the sandbox's control socket, the vsock
// socket and the serial log. The status the caller sees follows runtime-spec runtime.md "State":
// the sandbox process gone (or a zombie) means `stopped`, whatever the file said last.
import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { OciError } from './errors.js'

export type Status = 'creating' | 'created' | 'running' | 'paused' | 'stopped'

export interface ContainerState {
  ociVersion: string
  id: string
  bundle: string
  /** The sandbox process: the pid Docker waits for. 0 while creating. */
  pid: number
  /** Its start time in clock ticks (/proc/<pid>/stat field 22): a reused pid is not ours. */
  pidStart: number
  created: string
  annotations?: Record<string, string>
}

export const STATE_FILE = 'state.json'
export const STATUS_FILE = 'status'
export const CONTROL_SOCKET = 'control.sock'
export const VSOCK_SOCKET = 'vsock.sock'

/**
 * Where a container's Unix sockets live: sun_path holds 107 bytes (unix(7)) and Docker's state
 * directories are longer than that (/var/run/docker/runtime-runc/moby/<64 hex>/), so the sockets
 * go in a short directory named by a hash of the state directory, made by create and removed
 * with the container.
 */
export function socketDir(dir: string): string {
  return join(tmpdir(), `vmm-oci-${createHash('sha256').update(dir).digest('hex').slice(0, 16)}`)
}
export const CONSOLE_LOG = 'console.log'
export const EXEC_DIR = 'exec'

/** runc's rule for ids (libcontainer/factory_linux.go): letters, digits and _ + - . ; not . or .. */
export function checkId(id: string | undefined): string {
  if (id === undefined || id === '') throw new OciError('container id cannot be empty')
  if (!/^[\w+.-]+$/.test(id) || id === '.' || id === '..')
    throw new OciError(`invalid container id format: ${id}`)
  return id
}

export const containerDir = (root: string, id: string) => join(root, id)

/** Makes the container's directory, or fails as runc does when the id is taken. */
export function makeContainerDir(root: string, id: string): string {
  mkdirSync(root, { recursive: true, mode: 0o711 })
  const dir = containerDir(root, id)
  try {
    mkdirSync(dir, { mode: 0o711 })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new OciError(`container with id exists: ${id}`)
    throw e
  }
  return dir
}

/** Written to a temporary name and renamed: a concurrent reader sees the old or the new file. */
export function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, text)
  renameSync(tmp, file)
}

export function saveState(dir: string, state: ContainerState): void {
  writeAtomic(join(dir, STATE_FILE), `${JSON.stringify(state)}\n`)
}

export function loadState(root: string, id: string): { dir: string; state: ContainerState } {
  checkId(id)
  const dir = containerDir(root, id)
  let text: string
  try {
    text = readFileSync(join(dir, STATE_FILE), 'utf8')
  } catch {
    throw new OciError(`container "${id}" does not exist`)
  }
  return { dir, state: JSON.parse(text) as ContainerState }
}

/** Field 22 (starttime) of /proc/<pid>/stat, and whether the process is a zombie; undefined if gone. */
export function procStat(pid: number): { start: number; zombie: boolean; ppid: number } | undefined {
  if (!(pid > 0)) return undefined
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name (field 2) is in parentheses and may hold spaces: split after its ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return { zombie: rest[0] === 'Z' || rest[0] === 'X', start: Number(rest[19]), ppid: Number(rest[1]) }
}

export function isAlive(pid: number, start: number): boolean {
  const s = procStat(pid)
  return s !== undefined && !s.zombie && s.start === start
}

export function currentStatus(dir: string, state: ContainerState): Status {
  if (state.pid === 0) return 'creating'
  if (!isAlive(state.pid, state.pidStart)) return 'stopped'
  try {
    const s = readFileSync(join(dir, STATUS_FILE), 'utf8').trim()
    if (s === 'created' || s === 'running' || s === 'paused') return s
  } catch {}
  return 'created'
}

/** runtime.md "State" as `runc state` prints it (runc adds status, rootfs, created, owner). */
export function stateJson(dir: string, state: ContainerState, rootfs?: string): Record<string, unknown> {
  const status = currentStatus(dir, state)
  return {
    ociVersion: state.ociVersion,
    id: state.id,
    pid: status === 'stopped' ? 0 : state.pid,
    status,
    bundle: state.bundle,
    ...(rootfs ? { rootfs } : {}),
    created: state.created,
    owner: '',
    ...(state.annotations ? { annotations: state.annotations } : {}),
  }
}

/** The host pids of the container's exec processes still alive (files exec/<pid> with their start time). */
export function execPids(dir: string): number[] {
  let names: string[] = []
  try {
    names = readdirSync(join(dir, EXEC_DIR))
  } catch {}
  const out: number[] = []
  for (const n of names) {
    const pid = Number(n)
    let start = Number.NaN
    try {
      start = Number(readFileSync(join(dir, EXEC_DIR, n), 'utf8'))
    } catch {}
    if (isAlive(pid, start)) out.push(pid)
    else rmSync(join(dir, EXEC_DIR, n), { force: true })
  }
  return out
}

export function listContainers(root: string): string[] {
  try {
    return readdirSync(root).filter((n) => {
      try {
        readFileSync(join(root, n, STATE_FILE))
        return true
      } catch {
        return false
      }
    })
  } catch {
    return []
  }
}
