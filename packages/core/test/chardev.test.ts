import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { FileCharBackend, openCharBackend, SocketCharBackend } from '../src/chardev/index.js'

const dirs: string[] = []
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'vmm-chardev-'))
  dirs.push(d)
  return d
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

async function client(path: string): Promise<{ socket: Socket; text: () => string; closed: Promise<void> }> {
  const socket = connect(path)
  const chunks: Buffer[] = []
  socket.on('data', (b) => chunks.push(b))
  const closed = new Promise<void>((r) => socket.once('close', () => r()))
  await new Promise((r) => socket.once('connect', r))
  return { socket, text: () => Buffer.concat(chunks).toString(), closed }
}

const until = async (f: () => boolean) => {
  for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 10))
  expect(f()).toBe(true)
}

describe('character back ends', () => {
  it('file: appends batched output, flushed on close', () => {
    const path = join(tmp(), 'out.log')
    const b = openCharBackend('file', path)
    b.write(new TextEncoder().encode('ab'))
    b.write(new TextEncoder().encode('c'))
    b.close()
    expect(readFileSync(path, 'utf8')).toBe('abc')
  })

  it('socket (serial policy): keeps output for a late client, a new client replaces the old', async () => {
    const path = join(tmp(), 's.sock')
    const b = new SocketCharBackend(path, { keepWhileDisconnected: 1 << 20, secondClient: 'replace' })
    const input: string[] = []
    b.start((bytes) => input.push(new TextDecoder().decode(bytes)))
    b.write(new TextEncoder().encode('early'))
    b.flush()
    const first = await client(path)
    await until(() => first.text() === 'early')
    const second = await client(path)
    await first.closed
    second.socket.write('hi')
    await until(() => input.join('') === 'hi')
    second.socket.destroy()
    b.close()
  })

  it('socket (virtio-console policy): drops output while nobody is connected, refuses a second client', async () => {
    const path = join(tmp(), 'v.sock')
    const b = new SocketCharBackend(path, { keepWhileDisconnected: 0, secondClient: 'refuse' })
    b.start(() => {})
    b.write(new TextEncoder().encode('lost'))
    b.flush()
    const first = await client(path)
    const second = await client(path)
    await second.closed
    expect(second.text()).toBe('console busy\n')
    b.write(new TextEncoder().encode('seen'))
    await until(() => first.text() === 'seen')
    first.socket.destroy()
    b.close()
  })

  it('socket: paused input is not read until resumed', async () => {
    const path = join(tmp(), 'p.sock')
    const b = new SocketCharBackend(path)
    const input: string[] = []
    b.start((bytes) => input.push(new TextDecoder().decode(bytes)))
    b.pauseInput()
    const c = await client(path)
    c.socket.write('held')
    await new Promise((r) => setTimeout(r, 100))
    expect(input).toEqual([])
    b.resumeInput()
    await until(() => input.join('') === 'held')
    c.socket.destroy()
    b.close()
  })
})

describe('file output', () => {
  it('a path that cannot be opened names the path and why (issue 13 item 7)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmm-log-'))
    expect(() => new FileCharBackend(dir)).toThrow(
      `cannot open the output file ${dir}: is a directory (EISDIR)`,
    )
    expect(() => new FileCharBackend(join(dir, 'no', 'log'))).toThrow(
      `cannot open the output file ${join(dir, 'no', 'log')}: does not exist (ENOENT)`,
    )
    rmSync(dir, { recursive: true })
  })
})
