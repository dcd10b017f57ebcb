// Starting a detached helper (the sandbox, an exec proxy) that outlives this call: a new session
// (setsid) so the caller's terminal signals miss it, the caller's fds 0-2 (the container's stdio)
// passed on, and fd 3 a pipe on which it answers one line when it is ready ("ok") or not
// ("error <message>"). It stays our descendant: when this process exits, the caller (containerd's
// shim, a child subreaper) inherits it and reaps its exit status.
import { type ChildProcess, type IOType, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { OciError } from './errors.js'

export interface Helper {
  child: ChildProcess
  pid: number
}

/** Start the helper through vmm-jail: its path, the plan, and where it says why it failed. */
export interface Jailed {
  helper: string
  plan: string
  failure?: () => string | undefined
}

export function helperScript(name: string): string {
  return fileURLToPath(new URL(`./${name}.js`, import.meta.url))
}

/**
 * `stdio` false: the helper gets /dev/null for fds 0-2. With a terminal the container's stdio is
 * the pty, and the caller's fds must not stay open in a helper: containerd's go-runc reads a
 * create without IO through a pipe until EOF, so a helper holding it would hang the create.
 */
export async function startHelper(
  script: string,
  args: string[],
  cwd: string,
  what: string,
  stdio = true,
  fds: readonly number[] = [],
  jail?: Jailed,
): Promise<Helper> {
  const std: IOType[] = stdio ? ['inherit', 'inherit', 'inherit'] : ['ignore', 'ignore', 'ignore']
  // `fds` become the helper's fds 4, 5... (the sandbox's TAP: network.ts SANDBOX_TAP_FD). In a
  // jail, vmm-jail reads its plan on fd 3 and gets the rest one fd up, moving them back down for
  // the helper it execs (sandbox-jail.ts).
  const child: ChildProcess = jail
    ? spawn(jail.helper, [], { cwd, detached: true, stdio: [...std, 'pipe', 'pipe', ...fds] })
    : spawn(process.execPath, [script, ...args], { cwd, detached: true, stdio: [...std, 'pipe', ...fds] })
  if (jail) {
    const plan = child.stdio[3] as NodeJS.WritableStream
    plan.on('error', () => {}) // vmm-jail's own message says why it stopped reading
    plan.end(jail.plan)
  }
  const ready = child.stdio[jail ? 4 : 3] as NodeJS.ReadableStream
  const line = await new Promise<string>((resolve) => {
    let text = ''
    ready.on('data', (b: Buffer) => {
      text += b.toString()
      if (text.includes('\n')) resolve(text.slice(0, text.indexOf('\n')))
    })
    ready.on('error', () => resolve('error the helper closed its status pipe'))
    child.once('exit', (code, signal) =>
      resolve(text || `error the ${what} exited (${code ?? signal}) before it was ready`),
    )
    child.once('error', (e) => resolve(`error starting the ${what}: ${e.message}`))
  })
  ;(ready as unknown as { destroy(): void }).destroy()
  child.unref()
  if (line !== 'ok') {
    try {
      if (child.pid) process.kill(child.pid, 'SIGKILL')
    } catch {}
    const why = jail?.failure?.()
    throw new OciError(`${line.replace(/^error /, '')}${why ? ` (${why})` : ''}`)
  }
  return { child, pid: child.pid! }
}
