// `exec`: another process in a running container (runc exec). Each gets its own small host
// process, the exec proxy (exec-proxy.ts), with its own session to the agent: that proxy's pid
// is what --pid-file names, containerd signals it with kill(2) directly and waits for its exit
// status, so it forwards signals and exits as the guest process did. With --detach the proxy is
// started in the background and this call returns once the guest process runs; without, this
// call waits and exits with the process's status.
import { closeSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { constants } from 'node:os'
import { join, resolve } from 'node:path'
import { checkProcess, type Process } from './config.js'
import { OciError } from './errors.js'
import { SANDBOX_CONFIG, type SandboxConfig } from './sandbox-config.js'
import { helperScript, startHelper } from './spawn.js'
import { currentStatus, EXEC_DIR, loadState, writeAtomic } from './state.js'

export interface ExecOptions {
  root: string
  id: string
  processFile?: string
  /** `exec ID cmd args...` without --process: the container's env and cwd "/" (runc's defaults). */
  args: string[]
  tty: boolean
  cwd?: string
  env: string[]
  detach: boolean
  pidFile?: string
  consoleSocket?: string
}

export interface ExecConfig {
  process: Process
  vsockPath: string
  consoleSlave?: string
}

export function execProcess(o: ExecOptions, container: SandboxConfig): Process {
  if (o.processFile) {
    let p: unknown
    try {
      p = JSON.parse(readFileSync(o.processFile, 'utf8'))
    } catch (e) {
      throw new OciError(`exec --process ${o.processFile}: ${(e as Error).message}`)
    }
    return checkProcess(p, 'process.json')
  }
  if (o.args.length === 0) throw new OciError('exec: args must not be empty (give --process or a command)')
  const base = container.spec.process
  return checkProcess({
    args: o.args,
    env: [...(base.env ?? []), ...o.env],
    cwd: o.cwd ?? '/',
    terminal: o.tty,
    user: base.user,
  })
}

export async function exec(o: ExecOptions): Promise<number> {
  const { dir, state } = loadState(o.root, o.id)
  const status = currentStatus(dir, state)
  if (status !== 'running')
    throw new OciError(`cannot exec in a ${status === 'paused' ? 'paused' : 'stopped'} container`)
  const container = JSON.parse(readFileSync(join(dir, SANDBOX_CONFIG), 'utf8')) as SandboxConfig
  const proc = execProcess(o, container)
  if (proc.terminal && !o.consoleSocket && o.detach)
    throw new OciError('cannot allocate tty if runc will detach without setting console socket')
  const config: ExecConfig = { process: proc, vsockPath: container.plan.vsockPath }
  if (proc.terminal && o.consoleSocket) {
    const { openPty, sendFd } = await import('@vmm/host')
    const pty = openPty(true)
    try {
      sendFd(resolve(o.consoleSocket), pty.master)
    } finally {
      closeSync(pty.master)
      closeSync(pty.slave)
    }
    config.consoleSlave = pty.name
  }
  mkdirSync(join(dir, EXEC_DIR), { recursive: true })
  const file = join(dir, EXEC_DIR, `config-${process.pid}-${Date.now()}.json`)
  writeFileSync(file, JSON.stringify(config))
  const proxy = await startHelper(
    helperScript('exec-proxy'),
    [dir, file],
    state.bundle,
    'exec process',
    !config.consoleSlave,
  )
  if (o.pidFile) writeAtomic(resolve(o.pidFile), String(proxy.pid))
  if (o.detach) return 0
  proxy.child.ref()
  return new Promise((done) =>
    proxy.child.once('exit', (code, signal) => done(code ?? 128 + signalNumber(signal))),
  )
}

function signalNumber(s: NodeJS.Signals | null): number {
  return s ? (constants.signals[s] ?? 0) : 0
}
