// `create`: runtime-spec runtime.md "Create" and "Lifecycle" steps 1-3. Everything is checked
// before anything is made (config.json, the rootfs, the console socket rules); then the state
// directory, the network (network-link.ts: a TAP in the namespace the bundle names, for the VM),
// the sandbox (which boots the VM and has the agent prepare the container), the hooks
// prestart, createRuntime and createContainer (config.md "POSIX-platform Hooks"), and last the
// pid file (no newline: Docker parses it). Any failure undoes all of it: no VM process, socket or
// state directory is left (runtime.md "Errors").
import { closeSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Tap } from '@vmm/host'
import { readSpec, type Spec, vmSize } from './config.js'
import { OciError } from './errors.js'
import { runHooks } from './hooks.js'
import type { Logger } from './log.js'
import type { VmPlan } from './machine.js'
import { guestMounts } from './mounts.js'
import { type NetPlan, planNetwork, SANDBOX_TAP_FD } from './network.js'
import { connectNetwork, undoQuietly } from './network-link.js'
import { copyRootfsInitrd } from './rootfs-copy.js'
import { SANDBOX_CONFIG, type SandboxConfig } from './sandbox-config.js'
import {
  jailMessage,
  removeJail,
  type SandboxJail,
  sandboxPlan,
  takeJail,
  whyNoJail,
} from './sandbox-jail.js'
import { helperScript, startHelper } from './spawn.js'
import {
  CONSOLE_LOG,
  type ContainerState,
  checkId,
  makeContainerDir,
  procStat,
  saveState,
  socketDir,
  stateJson,
  VSOCK_SOCKET,
  writeAtomic,
} from './state.js'

export interface CreateOptions {
  root: string
  id: string
  bundle?: string
  pidFile?: string
  consoleSocket?: string
  /** vmm's seccomp filters on the sandbox process (default on; the global --no-seccomp turns them off). */
  seccomp?: boolean
  /** The sandbox in a jail of its own (default on as root; the global --no-jail turns it off). */
  jail?: boolean
  /** Why the fast start from the container template is off (the global --no-template), if it is. */
  templateOff?: string
  /** The --log file: a debug line says when a container boots cold rather than from the template. */
  log?: Logger
}

export const AGENT_DIR = fileURLToPath(new URL('../agent', import.meta.url))

/** Whether @vmm/virtio has the virtio-9p device (the rootfs shared with the host). */
export async function have9p(): Promise<boolean> {
  if (process.env.VMM_OCI_NO_9P === '1') return false
  const { virtioCatalogue } = await import('@vmm/virtio')
  return virtioCatalogue.some((d) => d.name === 'virtio-9p')
}

export function checkConsole(spec: Spec, consoleSocket: string | undefined): void {
  // runc's wording (utils_linux.go) for the two mismatches.
  if (spec.process.terminal && !consoleSocket)
    throw new OciError('cannot allocate tty if runc will detach without setting console socket')
  if (!spec.process.terminal && consoleSocket)
    throw new OciError('cannot use console socket if runc will not detach or allocate tty')
}

export async function create(o: CreateOptions): Promise<void> {
  checkId(o.id)
  const bundle = resolve(o.bundle ?? '.')
  const spec = readSpec(bundle)
  checkConsole(spec, o.consoleSocket)
  const with9p = await have9p()
  const mounts = guestMounts(spec, with9p)
  const dir = makeContainerDir(o.root, o.id)
  const sockets = socketDir(dir)
  let sandboxPid = 0
  let network: NetPlan | undefined
  let tap: Tap | undefined
  let jail: SandboxJail | undefined
  let ptySlave: number | undefined
  try {
    // Read-only, but after the id is taken: a second create of an id answers as runc does.
    network = planNetwork(spec)
    rmSync(sockets, { recursive: true, force: true }) // a container of this name that was never deleted
    mkdirSync(sockets, { mode: 0o700 })
    const { ensureContainerGuest } = await import('@vmm/image')
    const guest = await ensureContainerGuest(AGENT_DIR)
    const state: ContainerState = {
      ociVersion: spec.ociVersion,
      id: o.id,
      bundle,
      pid: 0,
      pidStart: 0,
      created: new Date().toISOString(),
      ...(spec.annotations ? { annotations: spec.annotations } : {}),
    }
    saveState(dir, state)
    let initrd = guest.initramfs
    if (!with9p) {
      // Development only, until virtio-9p exists: a read-only copy of the rootfs in the initrd.
      initrd = join(dir, 'initrd.cpio.gz')
      copyRootfsInitrd(guest.initramfs, spec.root.path, initrd)
    }
    const plan: VmPlan = {
      size: vmSize(spec.linux?.resources),
      vmlinux: guest.vmlinux,
      initrd,
      consoleLog: join(dir, CONSOLE_LOG),
      vsockPath: join(sockets, VSOCK_SOCKET),
      shares: mounts.shares,
    }
    if (network) {
      tap = await connectNetwork(network)
      plan.net = { tap: network.tap, fd: SANDBOX_TAP_FD, mac: network.mac }
    }
    const config: SandboxConfig = {
      id: o.id,
      spec,
      plan,
      mountRecords: mounts.records,
      seccomp: o.seccomp !== false,
      ...(network ? { network } : {}),
    }
    const { templateFor } = await import('./template-build.js')
    const off = o.templateOff ?? (process.env.VMM_OCI_TEMPLATE === '0' ? 'VMM_OCI_TEMPLATE=0' : undefined)
    config.template = await templateFor(plan, guest, off, (msg) => o.log?.log('debug', msg))
    const noJail = whyNoJail(o.jail === false)
    if (noJail === undefined) {
      jail = takeJail()
      config.jail = jail
      o.log?.log('debug', `the sandbox runs jailed in ${jail.dir} (uid ${jail.uid})`)
    } else o.log?.log('debug', `the sandbox runs unjailed: ${noJail}`)
    const fds = tap ? [tap.fd] : []
    if (spec.process.terminal && o.consoleSocket) {
      const { openPty, sendFd } = await import('@vmm/host')
      const pty = openPty(true)
      try {
        sendFd(resolve(o.consoleSocket), pty.master)
      } catch (e) {
        closeSync(pty.slave)
        throw new OciError(
          `sending the pty master to --console-socket ${o.consoleSocket}: ${(e as Error).message}`,
        )
      } finally {
        closeSync(pty.master)
      }
      // A jailed sandbox cannot open /dev/pts: it gets the slave as two fds (input, output).
      if (jail) {
        ptySlave = pty.slave
        config.consoleFd = 4 + fds.length
        fds.push(pty.slave, pty.slave)
      } else {
        closeSync(pty.slave)
        config.consoleSlave = pty.name
      }
    }
    writeFileSync(join(dir, SANDBOX_CONFIG), JSON.stringify(config))
    const script = helperScript('sandbox')
    const jailed = jail
      ? {
          helper: (await import('@vmm/host/jail')).jailHelperPath(),
          plan: await sandboxPlan({
            jail,
            stateDir: dir,
            socketDir: sockets,
            script,
            args: [dir],
            config,
            extraFds: fds.length,
            ...(config.consoleFd === undefined ? {} : { ctty: config.consoleFd }),
          }),
          failure: () => jailMessage(dir),
        }
      : undefined
    const sandbox = await startHelper(script, [dir], bundle, 'sandbox', !spec.process.terminal, fds, jailed)
    sandboxPid = sandbox.pid
    state.pid = sandbox.pid
    state.pidStart = procStat(sandbox.pid)?.start ?? 0
    saveState(dir, state)
    const hookState = { ...stateJson(dir, state), status: 'creating' }
    await runHooks(spec.hooks?.prestart, hookState, 'prestart')
    await runHooks(spec.hooks?.createRuntime, hookState, 'createRuntime')
    await runHooks(spec.hooks?.createContainer, hookState, 'createContainer')
    if (o.pidFile) writeAtomic(resolve(o.pidFile), String(sandbox.pid))
  } catch (e) {
    if (sandboxPid > 0) await killAndWait(sandboxPid)
    if (tap) {
      tap.close()
      undoQuietly(network as NetPlan)
    }
    rmSync(dir, { recursive: true, force: true })
    rmSync(sockets, { recursive: true, force: true })
    if (jail) removeJail(jail)
    throw e
  } finally {
    tap?.close() // the sandbox holds the TAP now (or nobody: it is gone)
    if (ptySlave !== undefined) closeSync(ptySlave) // and the pty's slave
  }
}

/** SIGKILL, then wait (up to 10 s) until the process is gone or a zombie its parent will reap. */
export async function killAndWait(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    return
  }
  for (let i = 0; i < 1000; i++) {
    const s = procStat(pid)
    if (!s || s.zombie) return
    await new Promise((r) => setTimeout(r, 10))
  }
}
