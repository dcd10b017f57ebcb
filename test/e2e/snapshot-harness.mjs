// Shared by test/e2e/micro-snapshot.test.ts, standard-snapshot.test.ts and bench/snapshot/run.mjs
// (plain JavaScript, like guest-harness.mjs): a booted machine driven through pausable-vmm.mjs's
// control socket (pause, snapshot, hotplug, stop), `vmm restore` child processes, clones of a
// snapshot with their own host resources, and host-side vsock listeners.
import { spawn } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { createNetns, root, vmmCli, watchConsole } from './guest-harness.mjs'

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

/**
 * One clone of snapshot `snap` (whose devices have the ids guest-harness's manifests give them:
 * net, blk, vsock) in a network namespace of its own whose TAP has `tapMac` (the first TAP's: the
 * guest's ARP entry for the host stays right), with its own disk copy, vsock socket (a listener
 * answering `host-<name>: ...` on `port`) and CID, given through the short options (`form:
 * 'short'`) or through --set. Its clean-ups go on `cleanups`. Resolves once its shell answered,
 * with the ms from spawn to that answer.
 */
export async function startClone({ snap, dir, name, tapMac, disk, cid, port, form, cleanups }) {
  const ns = createNetns(`vmm-e2e-${name}`)
  cleanups.push(ns.dispose)
  ns.exec('ip', ['link', 'set', ns.tap, 'address', tapMac])
  const sock = join(dir, `vsock-${name}`)
  const host = vsockListener(`${sock}_${port}`, `host-${name}`)
  cleanups.push(host.close)
  await host.listening
  const args =
    form === 'short'
      ? [
          '--tap',
          `net=${ns.tap}`,
          '--disk',
          `blk=${disk}`,
          '--vsock',
          `vsock=${sock}`,
          '--cid',
          `vsock=${cid}`,
        ]
      : [
          '--set',
          `net.tap=${ns.tap}`,
          '--set',
          `blk.path=${disk}`,
          '--set',
          `vsock.path=${sock}`,
          '--set',
          `vsock.cid=${cid}`,
        ]
  const p = startRestore(snap, args, dir, ns.wrap)
  cleanups.push(() => {
    if (p.child.exitCode === null) p.child.kill('SIGINT')
    return p.con.exitWithin(60_000).catch(() => {})
  })
  return { name, p, ms: await firstAnswer(p, p.spawnedAt, `hello-${name}`) }
}
