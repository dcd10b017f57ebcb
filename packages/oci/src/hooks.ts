// Hooks (runtime-spec config.md "POSIX-platform Hooks", runtime.md "Lifecycle"): each is run with
// the container's state JSON on stdin, its own args (args[0] is argv[0]) and env, and an optional
// timeout in seconds. A failing prestart/createRuntime/createContainer/startContainer hook fails
// the operation (the caller then deletes the container); a failing poststart or poststop hook is
// logged and the operation goes on. createContainer and startContainer belong in the container's
// namespaces; with the container in a VM they run on the host, in the runtime's namespaces.
import { spawn } from 'node:child_process'
import type { Hook } from './config.js'
import { OciError } from './errors.js'

export async function runHook(
  hook: Hook,
  state: Record<string, unknown>,
  name: string,
  index: number,
): Promise<void> {
  const [argv0, ...args] = hook.args && hook.args.length > 0 ? hook.args : [hook.path]
  const child = spawn(hook.path, args, {
    argv0,
    env: Object.fromEntries(
      (hook.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]),
    ),
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (b: Buffer) => (output += b.toString()))
  child.stderr.on('data', (b: Buffer) => (output += b.toString()))
  child.stdin.on('error', () => {}) // a hook that does not read its stdin
  child.stdin.end(JSON.stringify(state))
  const timer =
    hook.timeout && hook.timeout > 0
      ? setTimeout(() => child.kill('SIGKILL'), hook.timeout * 1000)
      : undefined
  const [code, signal, err] = await new Promise<[number | null, NodeJS.Signals | null, Error | undefined]>(
    (done) => {
      child.once('error', (e) => done([null, null, e]))
      child.once('close', (c, s) => done([c, s, undefined]))
    },
  )
  clearTimeout(timer)
  const what = `error running ${name} hook #${index} (${hook.path})`
  if (err) throw new OciError(`${what}: ${err.message}`)
  if (signal === 'SIGKILL' && timer) throw new OciError(`${what}: timed out after ${hook.timeout} s`)
  if (code !== 0) throw new OciError(`${what}: exit status ${code ?? signal}, output: ${output.trim()}`)
}

export async function runHooks(
  hooks: readonly Hook[] | undefined,
  state: Record<string, unknown>,
  name: string,
): Promise<void> {
  for (const [i, h] of (hooks ?? []).entries()) await runHook(h, state, name, i)
}
