import { mkdtempSync, statSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Machine } from '@vmm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { Controller, QmpClient, QmpServer } from '../src/index.js'
import { runningMachine } from './fixtures.js'

/** A raw connection that collects the server's CRLF-ended lines. */
class Raw {
  readonly lines: string[] = []
  private buffer = ''
  readonly socket: Socket
  closed = false
  constructor(path: string) {
    this.socket = connect(path)
    this.socket.on('data', (d) => {
      this.buffer += d.toString()
      let i = this.buffer.indexOf('\r\n')
      while (i >= 0) {
        this.lines.push(this.buffer.slice(0, i))
        this.buffer = this.buffer.slice(i + 2)
        i = this.buffer.indexOf('\r\n')
      }
    })
    this.socket.on('error', () => {})
    this.socket.on('close', () => (this.closed = true))
  }
  send(text: string): void {
    this.socket.write(text)
  }
  /** The n-th line (0: the greeting), parsed, once it has come. */
  async line(n: number): Promise<Record<string, unknown>> {
    await expect.poll(() => this.lines.length, { timeout: 5000 }).toBeGreaterThan(n)
    return JSON.parse(this.lines[n]!)
  }
}

let m: Machine | undefined
let server: QmpServer | undefined
const raws: Raw[] = []
afterEach(async () => {
  for (const r of raws.splice(0)) r.socket.destroy()
  await server?.close()
  await m?.dispose()
  server = m = undefined
})

async function serve(options = {}) {
  m = await runningMachine()
  const path = join(mkdtempSync(join(tmpdir(), 'vmm-qmp-')), 'qmp.sock')
  server = await QmpServer.listen(path, new Controller(m), options)
  const raw = () => {
    const r = new Raw(path)
    raws.push(r)
    return r
  }
  return { m, path, raw }
}

describe('QMP over a Unix socket (qmp-spec)', () => {
  it('greets, wants negotiation first, echoes ids and ends lines with CRLF', async () => {
    const { path, raw } = await serve()
    expect(statSync(path).mode & 0o777).toBe(0o600)
    const r = raw()
    const g = (await r.line(0)) as { QMP: { version: { qemu: object; package: string }; capabilities: [] } }
    expect(g.QMP.version.qemu).toEqual({ major: 7, minor: 2, micro: 0 })
    expect(g.QMP.version.package).toMatch(/^vmm/)
    expect(g.QMP.capabilities).toEqual([])
    r.send('{"execute":"query-status","id":"a"}')
    expect(await r.line(1)).toEqual({
      error: { class: 'CommandNotFound', desc: expect.any(String) },
      id: 'a',
    })
    // No newline between objects: the stream is parsed, not lines (go-qemu sends it so).
    r.send('{"execute":"qmp_capabilities","id":{"x":[1]}}{"execute":"query-status","id":2}\n')
    expect(await r.line(2)).toEqual({ return: {}, id: { x: [1] } })
    expect(await r.line(3)).toEqual({
      return: { running: true, singlestep: false, status: 'running' },
      id: 2,
    })
    r.send('{"execute":"qmp_capabilities"}')
    expect(await r.line(4)).toMatchObject({ error: { class: 'CommandNotFound' } })
  })

  it('answers bad input with the error QEMU gives, and the connection goes on', async () => {
    const { m, raw } = await serve()
    const r = raw()
    r.send('{"execute":"qmp_capabilities"}')
    await r.line(1)
    r.send('{"execute": nope}\n')
    expect(await r.line(2)).toMatchObject({
      error: { class: 'GenericError', desc: expect.stringMatching(/^JSON parse error/) },
    })
    r.send('[1,2]\n')
    expect(await r.line(3)).toMatchObject({ error: { desc: 'QMP input must be a JSON object' } })
    r.send('{"execute":"stop","arguments":{"x":1},"id":7}')
    expect(await r.line(4)).toEqual({
      error: { class: 'GenericError', desc: "stop: parameter 'x' is unexpected" },
      id: 7,
    })
    r.send('{"execute":"nothing","id":8}')
    expect(await r.line(5)).toMatchObject({ error: { class: 'CommandNotFound' }, id: 8 })
    r.send('{"exec":"stop"}')
    expect(await r.line(6)).toMatchObject({ error: { desc: "QMP input member 'exec' is unexpected" } })
    r.send('\x1b\x04{"execute":"query-status","id":9}') // control characters resynchronise, then a command
    expect(await r.line(7)).toMatchObject({ return: { status: 'running' }, id: 9 })
    expect(m.state).toBe('running')
  })

  it('sends events with timestamps to negotiated clients only; a client that leaves mid-command harms no one', async () => {
    const { m, raw, path } = await serve()
    const a = await QmpClient.connect(path)
    const silent = raw() // never negotiates
    await silent.line(0)
    const gone = raw()
    await gone.line(0)
    // Leaves as soon as its command is on its way: mid-command.
    gone.socket.write('{"execute":"qmp_capabilities"}{"execute":"stop"}', () => gone.socket.destroy())
    const stop = await a.waitFor('STOP', 5000)
    expect(stop.timestamp.seconds).toBeGreaterThan(1.7e9)
    expect(stop.timestamp.microseconds).toBeLessThan(1e6)
    expect(m.state).toBe('paused')
    const resumed = a.waitFor('RESUME', 5000) // sent before the answer, as QEMU does
    expect(await a.execute('cont')).toEqual({})
    await resumed
    expect(silent.lines).toHaveLength(1)
    expect(server!.clientCount).toBeGreaterThanOrEqual(2)
    await a.close()
  })

  it('closes a connection that sends a text over the limit; the others and the machine go on', async () => {
    const { m, raw, path } = await serve({ maxMessage: 1024 })
    const other = await QmpClient.connect(path)
    const r = raw()
    r.send(`{"execute":"qmp_capabilities"}{"execute":"stop","arguments":{"x":"${'a'.repeat(2000)}"}}`)
    expect(await r.line(2)).toMatchObject({
      error: { class: 'GenericError', desc: expect.stringContaining('over 1024 bytes') },
    })
    await expect.poll(() => r.closed).toBe(true)
    expect(m.state).toBe('running')
    expect(await other.execute('query-status')).toMatchObject({ status: 'running' })
    await other.close()
  })

  it('rate-limits a flood: commands over the limit are answered with an error and not run', async () => {
    const { m, path } = await serve({ rateLimit: 5 })
    const c = await QmpClient.connect(path) // qmp_capabilities was the first of 5
    const answers = await Promise.allSettled(Array.from({ length: 8 }, () => c.execute('stop')))
    expect(answers.filter((x) => x.status === 'fulfilled')).toHaveLength(4)
    const refused = answers.filter((x) => x.status === 'rejected') as PromiseRejectedResult[]
    expect(refused).toHaveLength(4)
    expect(String(refused[0]!.reason)).toContain('more than 5 commands a second')
    expect(m.state).toBe('paused')
    await c.close()
  })

  it('refuses to listen over a file that is not a socket, or a live socket; replaces a stale one', async () => {
    m = await runningMachine()
    const dir = mkdtempSync(join(tmpdir(), 'vmm-qmp-'))
    const file = join(dir, 'file')
    writeFileSync(file, 'keep me')
    const c = new Controller(m)
    await expect(QmpServer.listen(file, c)).rejects.toThrow('it exists and is a regular file')
    const live = join(dir, 'live.sock')
    const other = createServer().listen(live)
    await new Promise((r) => other.once('listening', r))
    await expect(QmpServer.listen(live, c)).rejects.toThrow('another process is listening on it')
    other.close()
    const stale = join(dir, 'stale.sock')
    // A socket file left by a server that died: bind, then close the fd without unlinking.
    const { execFileSync } = await import('node:child_process')
    execFileSync('python3', [
      '-c',
      `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(stale)})`,
    ])
    expect(statSync(stale).isSocket()).toBe(true)
    server = await QmpServer.listen(stale, c)
    const q = await QmpClient.connect(stale)
    expect(await q.execute('query-status')).toMatchObject({ status: 'running' })
    await q.close()
    expect(statSync(file).size).toBe(7)
  })
})
