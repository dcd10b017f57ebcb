// Shared by test/e2e/micro-snapshot.test.ts and bench/snapshot/run.mjs (plain JavaScript, like
// guest-harness.mjs): a booted machine driven through pausable-vmm.mjs's control socket (pause,
// snapshot, stop), `vmm restore` child processes, and host-side vsock listeners.
import { spawn } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { root, vmmCli, watchConsole } from './guest-harness.mjs'

/** One line-per-command client of pausable-vmm.mjs's control socket. */
export async function controlClient(path) {
  const socket = connect(path)
  await new Promise((ok, fail) => socket.once('connect', ok).once('error', fail))
  let text = ''
  const waiting = []
  socket.on('data', (b) => {
    text += b.toString()
    for (let nl = text.indexOf('\n'); nl >= 0 && waiting.length > 0; nl = text.indexOf('\n')) {
      const line = text.slice(0, nl)
      text = text.slice(nl + 1)
      waiting.shift()(line)
    }
  })
  return {
    /** Sends `command`, resolves with the answer line; an "error: ..." answer rejects. */
    send(command) {
      return new Promise((resolve, reject) => {
        waiting.push((line) => (line.startsWith('error') ? reject(new Error(line)) : resolve(line)))
        socket.write(`${command}\n`)
      })
    },
    close: () => socket.destroy(),
  }
}

/** pausable-vmm.mjs on `manifest` (inside `wrap`, e.g. a network namespace), its console and control socket. */
export function startPausable(manifest, controlPath, wrap = (argv) => argv) {
  const argv = wrap([process.execPath, join(root, 'test/e2e/pausable-vmm.mjs'), manifest, controlPath])
  const child = spawn(argv[0], argv.slice(1), { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] })
  return { child, con: watchConsole(child), write: (s) => child.stdin.write(s) }
}

/**
 * `vmm restore <dir> ...args` as a child process in `cwd` (where the snapshot's plugins resolve),
 * inside `wrap`. Returns it with its console; `spawnedAt` is performance.now() just before spawn.
 */
export function startRestore(dir, args, cwd, wrap = (argv) => argv) {
  const argv = wrap([process.execPath, vmmCli, 'restore', dir, ...args])
  const spawnedAt = performance.now()
  const child = spawn(argv[0], argv.slice(1), {
    cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, VMM_RESTORE_TIMINGS: '1' },
  })
  return { child, con: watchConsole(child), write: (s) => child.stdin.write(s), spawnedAt }
}

/**
 * Types `echo <word>-$((6*7))` on a fresh console and resolves with the ms from `since` until the
 * shell's answer appears: the time to the first shell answer.
 */
export async function firstAnswer(proc, since, word = 'answer', timeoutMs = 5 * 60_000) {
  const mark = proc.con.text().length
  proc.write(`echo ${word}-$((6*7))\n`)
  await proc.con.waitFor(new RegExp(`${word}-42`), mark, timeoutMs)
  return performance.now() - since
}

/**
 * A host Unix socket listener at `path` (a vsock port's `<udsPath>_<port>`) that answers each
 * connection's first line with `<reply>: <line>` and closes; `hold: true` reads and never answers
 * (a connection that stays open across a snapshot). Returns the server and the lines it got.
 */
export function vsockListener(path, reply, { hold = false } = {}) {
  const lines = []
  const sockets = new Set()
  const server = createServer((socket) => {
    sockets.add(socket)
    let text = ''
    socket.on('data', (b) => {
      text += b.toString()
      const nl = text.indexOf('\n')
      if (nl < 0) return
      lines.push(text.slice(0, nl))
      if (!hold) socket.end(`${reply}: ${text.slice(0, nl)}\n`)
    })
    socket.on('error', () => socket.destroy())
    socket.on('close', () => sockets.delete(socket))
  })
  const listening = new Promise((r) => server.listen(path, r))
  return {
    lines,
    listening,
    close: () => {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}
