import { spawnSync } from 'node:child_process'
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { SocketCharBackend } from '../src/chardev/index.js'
import { listenUnixSocket, UnixSocketError } from '../src/chardev/unix-socket.js'

const dirs: string[] = []
const servers: Server[] = []
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'vmm-uds-'))
  dirs.push(d)
  return d
}
afterEach(() => {
  for (const s of servers.splice(0)) s.close()
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})
const server = () => {
  const s = createServer((c) => {
    c.on('error', () => {})
    c.end('hi')
  })
  servers.push(s)
  return s
}

/** A socket file left behind by a process that was killed (SIGKILL: nothing cleaned up). */
function staleSocket(path: string): void {
  const r = spawnSync(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`,
  ])
  expect(r.signal).toBe('SIGKILL')
  expect(lstatSync(path).isSocket()).toBe(true)
}

describe('listenUnixSocket', () => {
  it('never deletes a regular file or a directory at the path; the error names the path', async () => {
    const dir = tmp()
    const disk = join(dir, 'disk.img')
    writeFileSync(disk, 'precious')
    const err = await listenUnixSocket(server(), disk, 'virtio-vsock socket').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UnixSocketError)
    expect((err as Error).message).toBe(
      `virtio-vsock socket: cannot listen on ${disk}: it exists and is a regular file; vmm never deletes a file it did not create: choose another path, or remove the file yourself`,
    )
    expect(readFileSync(disk, 'utf8')).toBe('precious')
    mkdirSync(join(dir, 'sub'))
    await expect(listenUnixSocket(server(), join(dir, 'sub'), 'x')).rejects.toThrow(
      /it exists and is a directory/,
    )
    expect(lstatSync(join(dir, 'sub')).isDirectory()).toBe(true)
  })

  it('replaces a stale socket of a killed run, and removes its own socket at close', async () => {
    const path = join(tmp(), 'stale.sock')
    staleSocket(path)
    const l = await listenUnixSocket(server(), path, 'console socket')
    const c = connect(path)
    const got = await new Promise<string>((r) => c.on('data', (b) => r(b.toString())))
    expect(got).toBe('hi')
    c.on('error', () => {})
    c.destroy()
    l.close()
    expect(() => lstatSync(path)).toThrow(/ENOENT/)
  })

  it('refuses a socket another process listens on', async () => {
    const path = join(tmp(), 'live.sock')
    const first = await listenUnixSocket(server(), path, 'first')
    await expect(listenUnixSocket(server(), path, 'vsock')).rejects.toThrow(
      `vsock: cannot listen on ${path}: another process is listening on it (is this machine already running?)`,
    )
    first.close()
  })

  it('a missing directory, no permission and a too long path are errors naming the path', async () => {
    const dir = tmp()
    await expect(listenUnixSocket(server(), join(dir, 'no', 'such', 's.sock'), 'serial')).rejects.toThrow(
      `serial: cannot listen on ${join(dir, 'no', 'such', 's.sock')}: the directory ${join(dir, 'no', 'such')} does not exist`,
    )
    await expect(listenUnixSocket(server(), join(dir, 'x'.repeat(120)), 'serial')).rejects.toThrow(
      /a Unix socket path has at most 107/,
    )
    if (process.getuid?.() !== 0) {
      // root passes every permission check; the test only means something for other users.
      mkdirSync(join(dir, 'ro'))
      chmodSync(join(dir, 'ro'), 0o500)
      await expect(listenUnixSocket(server(), join(dir, 'ro', 's.sock'), 'serial')).rejects.toThrow(
        /permission denied/,
      )
    }
  })
})

describe('SocketCharBackend over listenUnixSocket', () => {
  it('a listen error rejects ready() instead of an unhandled error event, and the file is kept', async () => {
    const path = join(tmp(), 'disk.img')
    writeFileSync(path, 'precious')
    const b = new SocketCharBackend(path, {
      keepWhileDisconnected: 0,
      secondClient: 'refuse',
      owner: 'virtio-console socket',
    })
    await expect(b.ready()).rejects.toThrow(
      `virtio-console socket: cannot listen on ${path}: it exists and is a regular file`,
    )
    b.close()
    expect(readFileSync(path, 'utf8')).toBe('precious')
  })
})
