// `vmm run --qmp` and `vmm ctl` as processes, on the test hypervisor (a `jmp $` guest): the
// socket, the manifest's control.qmp, readable and --json answers, errors, events, quit.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { fixture } from './fixtures.js'

const main = join(import.meta.dirname, '../dist/main.js')
const run = promisify(execFile)
const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL')
})

const manifest = (extra = '') => `machine: { memory: 1MiB }
components:
  guest: { type: raw-image, file: guest.bin, address: 0x7c00 }
${extra}`

async function started(args: string[], sock: string, dir: string) {
  const child = spawn(process.execPath, [main, 'run', join(dir, 'm.yaml'), '--hypervisor', 'test', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let stderr = ''
  child.stderr!.on('data', (d) => (stderr += d))
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
  await expect.poll(() => existsSync(sock), { timeout: 15_000 }).toBe(true)
  return { child, exited, stderr: () => stderr }
}

async function ctl(...args: string[]) {
  try {
    const r = await run(process.execPath, [main, 'ctl', ...args], { encoding: 'utf8' })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string }
    return { code: x.code, stdout: x.stdout, stderr: x.stderr }
  }
}

describe('vmm run --qmp and vmm ctl', () => {
  it('drives a running machine: status, stop, cont, errors, events, quit; the run exits 0', async () => {
    const dir = fixture({ 'guest.bin': Uint8Array.of(0xeb, 0xfe), 'm.yaml': manifest() })
    const sock = join(dir, 'qmp.sock')
    const vm = await started(['--qmp', sock], sock, dir)
    expect(statSync(sock).mode & 0o777).toBe(0o600)
    await expect
      .poll(async () => (await ctl(sock, 'query-status', '--json')).stdout, { timeout: 10_000 })
      .toContain('"running"')

    const events = spawn(process.execPath, [main, 'ctl', sock, 'events', '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(events)
    let streamed = ''
    events.stdout!.on('data', (d) => (streamed += d))
    const eventsExited = new Promise((r) => events.on('exit', r))
    await new Promise((r) => setTimeout(r, 500))

    expect(await ctl(sock, 'stop')).toMatchObject({ code: 0 })
    expect((await ctl(sock, 'query-status')).stdout).toContain('"status": "paused"')
    expect(await ctl(sock, 'cont')).toMatchObject({ code: 0 })
    const bad = await ctl(sock, 'stop', '{"now": true}')
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain("parameter 'now' is unexpected")
    const unknown = await ctl(sock, 'frobnicate', '--json')
    expect(unknown.code).toBe(1)
    expect(JSON.parse(unknown.stdout)).toMatchObject({ error: { class: 'CommandNotFound' } })
    expect((await ctl(sock, 'query-commands')).stdout).toContain('device_add')
    expect((await ctl(sock, 'nosuch', 'not json')).code).toBe(2)

    expect(await ctl(sock, 'quit')).toMatchObject({ code: 0 })
    expect(await vm.exited).toBe(0)
    await eventsExited
    const names = streamed
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).event)
    expect(names).toEqual(['STOP', 'RESUME', 'SHUTDOWN'])
    expect(streamed).toContain('"reason":"host-qmp-quit"')
    expect(existsSync(sock)).toBe(false)
  }, 60_000)

  it('takes the socket from the manifest (relative to it) and refuses a path that is not a socket', async () => {
    const dir = fixture({
      'guest.bin': Uint8Array.of(0xeb, 0xfe),
      'm.yaml': manifest('control: { qmp: ctl.sock }'),
      file: 'x',
    })
    const sock = join(dir, 'ctl.sock')
    const vm = await started([], sock, dir)
    expect((await ctl(sock, 'quit')).code).toBe(0)
    expect(await vm.exited).toBe(0)

    const refused = spawn(process.execPath, [
      main,
      'run',
      join(dir, 'm.yaml'),
      '--hypervisor',
      'test',
      '--qmp',
      join(dir, 'file'),
    ])
    let err = ''
    refused.stderr.on('data', (d) => (err += d))
    expect(await new Promise((r) => refused.on('exit', r))).toBe(1)
    expect(err).toContain('it exists and is a regular file')
    expect(statSync(join(dir, 'file')).size).toBe(1)
  }, 60_000)

  it('rejects a bad control section in the manifest', async () => {
    const dir = fixture({
      'guest.bin': Uint8Array.of(0xeb, 0xfe),
      'm.yaml': manifest('control: { qmp: 3, rest: x }'),
    })
    const r = await run(process.execPath, [main, 'validate', join(dir, 'm.yaml')]).catch(
      (e) => e as { stderr: string; code: number },
    )
    expect((r as { code: number }).code).toBe(2) // a manifest error (packages/cli/src/exit-codes.ts)
    expect((r as { stderr: string }).stderr).toContain(
      'm.yaml:4:20: unknown field "rest"; expected one of: qmp',
    )
    expect((r as { stderr: string }).stderr).toContain('m.yaml:4:17: expected string')
  })
})
