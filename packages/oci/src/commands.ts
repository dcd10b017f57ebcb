// The operations on an existing container (runtime-spec runtime.md "Operations": state, start,
// kill, delete) and runc's others that Docker and containerd call: ps, pause, resume, update,
// features. Each finds the container under --root and answers with runc's wording on error.
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { createConnection } from 'node:net'
import { join } from 'node:path'
import { type Resources, type Spec, vmSize } from './config.js'
import { killAndWait } from './create.js'
import { OciError } from './errors.js'
import { runHooks } from './hooks.js'
import type { Logger } from './log.js'
import { disconnectNetwork } from './network-link.js'
import { SANDBOX_CONFIG, type SandboxConfig } from './sandbox-config.js'
import { removeJail } from './sandbox-jail.js'
import { parseSignal } from './signals.js'
import {
  CONTROL_SOCKET,
  currentStatus,
  execPids,
  loadState,
  procStat,
  socketDir,
  stateJson,
} from './state.js'

/** A request to the sandbox's control socket; its error becomes ours. */
export function control(dir: string, op: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = createConnection(join(socketDir(dir), CONTROL_SOCKET))
    let text = ''
    s.on('connect', () => s.write(`${JSON.stringify({ op })}\n`))
    s.on('data', (b: Buffer) => (text += b.toString()))
    s.on('error', (e) => reject(new OciError(`the container's sandbox does not answer: ${e.message}`)))
    s.on('end', () => {
      try {
        const r = JSON.parse(text) as { ok?: boolean; error?: string }
        if (r.ok) resolve()
        else reject(new OciError(r.error ?? 'the sandbox failed'))
      } catch {
        reject(new OciError('the sandbox closed the connection'))
      }
    })
  })
}

function sandboxConfig(dir: string): SandboxConfig {
  return JSON.parse(readFileSync(join(dir, SANDBOX_CONFIG), 'utf8')) as SandboxConfig
}

export function state(root: string, id: string): string {
  const { dir, state } = loadState(root, id)
  let rootfs: string | undefined
  try {
    rootfs = sandboxConfig(dir).spec.root.path
  } catch {}
  return `${JSON.stringify(stateJson(dir, state, rootfs), null, 2)}\n`
}

export async function start(root: string, id: string, logger: Logger): Promise<void> {
  const { dir, state } = loadState(root, id)
  const status = currentStatus(dir, state)
  if (status === 'stopped') throw new OciError('cannot start a container that has stopped')
  if (status === 'running' || status === 'paused')
    throw new OciError('cannot start an already running container')
  if (status !== 'created') throw new OciError(`cannot start a container in the ${status} state`)
  const spec = sandboxConfig(dir).spec
  await runHooks(spec.hooks?.startContainer, stateJson(dir, state), 'startContainer')
  await control(dir, 'start')
  // config.md: a failing poststart hook is logged; the container goes on.
  try {
    await runHooks(spec.hooks?.poststart, stateJson(dir, state), 'poststart')
  } catch (e) {
    logger.log('warning', (e as Error).message)
  }
}

export async function kill(root: string, id: string, signal: string | undefined): Promise<void> {
  const { dir, state } = loadState(root, id)
  const n = parseSignal(signal)
  const status = currentStatus(dir, state)
  if (status === 'stopped' || status === 'creating') throw new OciError('container not running')
  // The sandbox forwards what it can catch to the container's process; SIGKILL (and SIGSTOP)
  // cannot be caught: they take the sandbox, and with it the VM, as they would take init.
  process.kill(state.pid, n)
}

export async function remove(root: string, id: string, force: boolean, logger: Logger): Promise<void> {
  let found: ReturnType<typeof loadState>
  try {
    found = loadState(root, id)
  } catch (e) {
    // runc: `delete --force` of a container that is not there is not an error.
    if (force) return
    throw e
  }
  const { dir, state } = found
  const status = currentStatus(dir, state)
  if ((status === 'running' || status === 'paused') && !force)
    throw new OciError(`cannot delete container ${id} that is not stopped: ${status}`)
  for (const pid of execPids(dir)) await killAndWait(pid)
  if (status !== 'stopped') await killAndWait(state.pid)
  let config: SandboxConfig | undefined
  try {
    config = sandboxConfig(dir)
  } catch {}
  const spec: Spec | undefined = config?.spec
  // The TAP went with the sandbox; what we added to the caller's interface goes now.
  try {
    if (config?.network) disconnectNetwork(config.network)
  } catch (e) {
    logger.log('warning', `disconnecting the network: ${(e as Error).message}`)
  }
  rmSync(dir, { recursive: true, force: true })
  rmSync(socketDir(dir), { recursive: true, force: true })
  const left = config?.jail ? removeJail(config.jail) : []
  if (left.length > 0) logger.log('warning', `the sandbox's jail left behind: ${left.join(', ')}`)
  try {
    await runHooks(spec?.hooks?.poststop, { ...stateJson(dir, state), status: 'stopped', pid: 0 }, 'poststop')
  } catch (e) {
    logger.log('warning', (e as Error).message)
  }
}

/**
 * `ps --format json`: the host pids of the container (the sandbox, or its jail's supervisor, init
 * and sandbox, and each exec proxy), as `docker top` wants.
 */
export function ps(root: string, id: string, format: string): string {
  const { dir, state } = loadState(root, id)
  const status = currentStatus(dir, state)
  const pids = status === 'stopped' ? [] : [state.pid, ...descendants(state.pid), ...execPids(dir)]
  if (format === 'json') return `${JSON.stringify(pids)}\n`
  if (format !== 'table') throw new OciError(`invalid format option: ${format}`)
  return `PID\n${pids.join('\n')}\n`
}

/** The processes below `pid`, from each process's parent in /proc/<pid>/stat (proc(5), procStat). */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>()
  for (const name of readdirSync('/proc')) {
    const ppid = /^\d+$/.test(name) ? procStat(Number(name))?.ppid : undefined // gone meanwhile: undefined
    if (ppid !== undefined) parent.set(Number(name), ppid)
  }
  const out: number[] = []
  const walk = (p: number) => {
    for (const [child, pp] of parent)
      if (pp === p) {
        out.push(child)
        walk(child)
      }
  }
  walk(pid)
  return out.sort((a, b) => a - b)
}

export async function pause(root: string, id: string, resume: boolean): Promise<void> {
  const { dir, state } = loadState(root, id)
  const status = currentStatus(dir, state)
  if (!resume && status !== 'running' && status !== 'created') throw new OciError('container not running')
  if (resume && status !== 'paused') throw new OciError('container not paused')
  await control(dir, resume ? 'resume' : 'pause')
}

/**
 * `update --resources`: the VM's vCPUs and RAM are fixed at boot (the micro board has no CPU or
 * memory hot-plug), so a change to them is refused; limits a VM has no use for (pids, blkio...)
 * are accepted and ignored, as the VM's size already bounds them.
 */
export function update(root: string, id: string, resourcesJson: string): void {
  const { dir, state } = loadState(root, id)
  if (currentStatus(dir, state) === 'stopped') throw new OciError('container not running')
  let r: Resources
  try {
    r = JSON.parse(resourcesJson) as Resources
  } catch (e) {
    throw new OciError(`update: the resources are not JSON: ${(e as Error).message}`)
  }
  const current = sandboxConfig(dir).plan.size
  const asked = vmSize({ ...(r.memory ? { memory: r.memory } : {}), ...(r.cpu ? { cpu: r.cpu } : {}) })
  const memoryAsked = (r.memory?.limit ?? 0) > 0
  const cpuAsked = (r.cpu?.quota ?? 0) > 0 || !!r.cpu?.cpus
  if ((memoryAsked && asked.memoryMiB !== current.memoryMiB) || (cpuAsked && asked.vcpus !== current.vcpus))
    throw new OciError(
      `update: the microVM has ${current.vcpus} vCPUs and ${current.memoryMiB} MiB, fixed at create; ` +
        `changing them to ${asked.vcpus} vCPUs and ${asked.memoryMiB} MiB is not supported`,
    )
}

/** runtime-spec features.md (runc's `features`): what this runtime understands. */
export function features(version: string): string {
  return `${JSON.stringify(
    {
      ociVersionMin: '1.0.0',
      ociVersionMax: '1.1.0',
      hooks: ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'],
      mountOptions: ['ro', 'rw', 'nosuid', 'nodev', 'noexec', 'bind', 'rbind', 'relatime', 'noatime'],
      linux: {
        namespaces: ['mount', 'pid', 'network', 'ipc', 'uts'],
        cgroup: { v1: false, v2: false, systemd: false },
        seccomp: { enabled: false },
        apparmor: { enabled: false },
        selinux: { enabled: false },
      },
      annotations: { 'org.vmm.oci.version': version, 'org.vmm.oci.sandbox': 'microvm' },
    },
    null,
    2,
  )}\n`
}
