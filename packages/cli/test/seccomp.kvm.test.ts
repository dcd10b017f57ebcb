// seccomp on /dev/kvm, where the vCPU threads carry a filter of their own stacked on the process
// filter (@vmm/host src/seccomp, @vmm/kvm vcpu_seccomp.cc):
//  - a device handler that spawns a process stops the run with the call and thread named; with
//    --no-seccomp the run goes on;
//  - the lists are checked against what a run really calls: `vmm run --qmp` driven through a
//    pause/resume/query/quit session and `vmm restore` of a snapshot run in record mode
//    (VMM_SECCOMP_RECORD), and any call a list lacks fails the test by name, thread and filter.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Machine } from '@vmm/core'
import { Kvm, KvmHypervisor } from '@vmm/kvm'
import { afterEach, describe, expect, it } from 'vitest'
import { EXIT_SECCOMP } from '../src/exit-codes.js'
import { fixture } from './fixtures.js'
import { runVmm, spawnGuest, spawnMachine } from './seccomp-fixtures.js'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[seccomp on KVM skipped] ${kvmUnavailable}`)

const main = join(import.meta.dirname, '../dist/main.js')
const execFileP = promisify(execFile)
const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL')
})
const ctl = (sock: string, ...args: string[]) =>
  execFileP(process.execPath, [main, 'ctl', sock, ...args], { encoding: 'utf8' }).then((r) => r.stdout)

interface Recorded {
  filter: string
  syscall: string
  thread: string
}
/** The calls a record-mode run found missing, one line each, for the failure message. */
const missing = (file: string) =>
  (JSON.parse(readFileSync(file, 'utf8')) as Recorded[]).map(
    (r) => `${r.syscall} (${r.filter} filter, thread ${r.thread})`,
  )

function start(args: string[], env: NodeJS.ProcessEnv = {}) {
  const vm = spawn(process.execPath, [main, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  })
  children.push(vm)
  let stderr = ''
  vm.stderr!.on('data', (d) => (stderr += d))
  const exited = new Promise<number | null>((r) => vm.on('exit', (code) => r(code)))
  return { vm, exited, stderr: () => stderr }
}

describe.skipIf(kvmUnavailable)('seccomp on KVM', () => {
  it('stops a device handler that spawns a process; --no-seccomp goes on', () => {
    const dir = fixture({ 'g.bin': spawnGuest, 'm.yaml': spawnMachine('1MiB') })
    const on = runVmm(['run', join(dir, 'm.yaml')])
    expect(on.code, on.stderr).toBe(EXIT_SECCOMP)
    expect(on.stderr).toMatch(
      /vmm: seccomp: thread "[^"]+" \(tid \d+\) made a system call the process filter denies: (clone|clone3|fork|vfork|execve) \(\d+\)/,
    )
    expect(on.stdout).toBe('')
    const off = runVmm(['run', join(dir, 'm.yaml'), '--no-seccomp'])
    expect(off).toEqual({ code: 0, stdout: 'ok', stderr: 'spawn-on-write: child ran, status 0\n' })
  })

  it('a QMP session (status, stop, cont, queries, quit) makes no call the lists lack', async () => {
    const dir = fixture({
      'guest.bin': Uint8Array.of(0xeb, 0xfe), // jmp $
      'm.yaml':
        'machine: { memory: 1MiB, vcpus: 2, irqchip: true }\ncomponents:\n  guest: { type: raw-image, file: guest.bin, address: 0x7c00 }\n',
    })
    const sock = join(dir, 'qmp.sock')
    const record = join(dir, 'record.json')
    const run = start(['run', join(dir, 'm.yaml'), '--qmp', sock], { VMM_SECCOMP_RECORD: record })
    await expect.poll(() => existsSync(sock), { timeout: 30_000 }).toBe(true)
    await expect
      .poll(async () => JSON.parse(await ctl(sock, 'query-status', '--json')).return.status, {
        timeout: 30_000,
      })
      .toBe('running')
    await ctl(sock, 'stop')
    await ctl(sock, 'query-cpus-fast')
    await ctl(sock, 'x-query-components')
    await ctl(sock, 'cont')
    await ctl(sock, 'query-commands')
    await ctl(sock, 'quit')
    expect(await run.exited, run.stderr()).toBe(0)
    expect(run.stderr()).toMatch(/seccomp recording: process filter \d+ calls, vCPU filter \d+ calls/)
    expect(missing(record)).toEqual([])
  }, 120_000)

  it('vmm restore of a snapshot, run and stopped, makes no call the lists lack', async () => {
    const dir = fixture({ 'guest.bin': Uint8Array.of(0xeb, 0xfe) })
    const hypervisor = new KvmHypervisor(Kvm.open())
    const snap = join(dir, 'snap')
    try {
      const m = await Machine.fromObject(
        {
          machine: { memory: '1MiB', irqchip: true },
          components: { guest: { type: 'raw-image', file: join(dir, 'guest.bin'), address: 0x7c00 } },
        },
        { hypervisor },
      )
      await m.load()
      await m.start()
      await m.pause()
      await m.snapshot(snap)
      await m.dispose()
    } finally {
      hypervisor.dispose()
    }
    const record = join(dir, 'record.json')
    const run = start(['restore', snap], { VMM_SECCOMP_RECORD: record })
    await expect.poll(run.stderr, { timeout: 30_000 }).toMatch(/seccomp recording/)
    await new Promise((r) => setTimeout(r, 1000))
    run.vm.kill('SIGTERM')
    expect(await run.exited, run.stderr()).toBe(0)
    expect(missing(record)).toEqual([])
  }, 120_000)
})

describe.skipIf(kvmUnavailable || !existsSync('/usr/bin/script'))(
  'seccomp with the console on a terminal',
  () => {
    it('a serial console on a pseudo-terminal (raw mode, Ctrl-A x, the terminal restored) runs under the filters', async () => {
      const dir = fixture({
        'guest.bin': Uint8Array.of(0xeb, 0xfe), // jmp $
        'm.yaml':
          `plugins: [${JSON.stringify(createRequire(import.meta.url).resolve('@vmm/board-micro'))}]\n` +
          'machine: { memory: 1MiB, irqchip: true }\ncomponents:\n  guest: { type: raw-image, file: guest.bin, address: 0x7c00 }\n' +
          '  serial: { type: serial, console: stdio, resources: { port: 0x3f8, irq: 4 } }\n',
      })
      // util-linux script(1) gives vmm a pseudo-terminal as its stdin and stdout, as a user's shell would.
      const tty = spawn(
        'script',
        ['-qfec', `${process.execPath} ${main} run ${join(dir, 'm.yaml')}`, '/dev/null'],
        {
          stdio: ['pipe', 'pipe', 'pipe'],
        },
      )
      children.push(tty)
      let out = ''
      tty.stdout.on('data', (d) => (out += d))
      tty.stderr.on('data', (d) => (out += d))
      const exited = new Promise<number | null>((r) => tty.on('exit', (code) => r(code)))
      await new Promise((r) => setTimeout(r, 3000))
      tty.stdin.write('\x01x') // Ctrl-A x: leave the console
      expect(await exited, out).toBe(0)
      expect(out).not.toContain('seccomp')
    }, 60_000)
  },
)
