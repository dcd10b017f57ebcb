// `vmm run --qmp` on /dev/kvm (the default hypervisor, @vmm/kvm) driven by `vmm ctl` as a user
// would: a tiny real-mode guest that spins (`jmp $`) so the run lasts until QMP ends it. Pausing
// must take the spinning vCPU out of KVM_RUN and resuming put it back (qmp-spec's STOP/RESUME).
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Kvm } from '@vmm/kvm'
import { afterEach, describe, expect, it } from 'vitest'
import { fixture } from './fixtures.js'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[vmm ctl on KVM skipped] ${kvmUnavailable}`)

const main = join(import.meta.dirname, '../dist/main.js')
const execFileP = promisify(execFile)
const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL')
})

async function ctl(sock: string, ...args: string[]) {
  try {
    const r = await execFileP(process.execPath, [main, 'ctl', sock, ...args], { encoding: 'utf8' })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string }
    return { code: x.code, stdout: x.stdout, stderr: x.stderr }
  }
}

const status = async (sock: string) => JSON.parse((await ctl(sock, 'query-status', '--json')).stdout).return

describe('vmm run --qmp on KVM, driven by vmm ctl', () => {
  it.skipIf(kvmUnavailable)(
    'query-status running, stop -> paused, cont -> running, quit ends the run',
    async () => {
      const dir = fixture({
        'guest.bin': Uint8Array.of(0xeb, 0xfe), // jmp $
        'm.yaml':
          'machine: { memory: 1MiB }\ncomponents:\n  guest: { type: raw-image, file: guest.bin, address: 0x7c00 }\n',
      })
      const sock = join(dir, 'qmp.sock')
      const vm = spawn(process.execPath, [main, 'run', join(dir, 'm.yaml'), '--qmp', sock], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      children.push(vm)
      let stderr = ''
      vm.stderr!.on('data', (d) => (stderr += d))
      const exited = new Promise<number | null>((r) => vm.on('exit', (code) => r(code)))
      await expect.poll(() => existsSync(sock), { timeout: 30_000 }).toBe(true)
      await expect.poll(async () => (await status(sock))?.status, { timeout: 30_000 }).toBe('running')

      expect(await ctl(sock, 'stop')).toMatchObject({ code: 0 })
      expect(await status(sock)).toEqual({ running: false, singlestep: false, status: 'paused' })
      expect(await ctl(sock, 'cont')).toMatchObject({ code: 0 })
      expect(await status(sock)).toEqual({ running: true, singlestep: false, status: 'running' })
      // The vCPU is really back in the guest: a second pause still finds it and takes it out.
      expect(await ctl(sock, 'stop')).toMatchObject({ code: 0 })
      expect((await status(sock)).status).toBe('paused')
      expect(await ctl(sock, 'cont')).toMatchObject({ code: 0 })

      expect(await ctl(sock, 'quit')).toMatchObject({ code: 0 })
      expect(await exited, stderr).toBe(0)
      expect(existsSync(sock)).toBe(false)
    },
    120_000,
  )

  it.skipIf(kvmUnavailable)(
    'system_reset, then x-snapshot-save of the paused machine and vmm restore --paused --qmp, resumed with cont',
    async () => {
      const dir = fixture({
        'guest.bin': Uint8Array.of(0xeb, 0xfe), // jmp $
        'm.yaml':
          'machine: { memory: 1MiB, irqchip: true }\ncomponents:\n  guest: { type: raw-image, file: guest.bin, address: 0x7c00 }\n',
      })
      const start = (args: string[]) => {
        const p = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
        children.push(p)
        const out = { stderr: '' }
        p.stderr!.on('data', (d) => (out.stderr += d))
        return { out, exited: new Promise<number | null>((r) => p.on('exit', (code) => r(code))) }
      }
      const sock = join(dir, 'qmp.sock')
      const first = start(['run', join(dir, 'm.yaml'), '--qmp', sock])
      await expect
        .poll(async () => existsSync(sock) && (await status(sock))?.status, { timeout: 30_000 })
        .toBe('running')
      expect(await ctl(sock, 'system_reset')).toMatchObject({ code: 0 })
      expect((await status(sock)).status).toBe('running')

      const snap = join(dir, 'snap')
      const running = await ctl(sock, 'x-snapshot-save', JSON.stringify({ dir: snap }))
      expect(running.code).toBe(1)
      expect(running.stderr).toContain('a snapshot is taken of a paused machine (stop first)')
      expect((await ctl(sock, 'x-snapshot-save', '{"dir":"relative"}')).stderr).toContain('absolute path')
      expect(await ctl(sock, 'stop')).toMatchObject({ code: 0 })
      const saved = await ctl(sock, 'x-snapshot-save', JSON.stringify({ dir: snap }), '--json')
      expect(saved.code, saved.stderr).toBe(0)
      expect(JSON.parse(saved.stdout).return).toMatchObject({ dir: snap, 'memory-bytes': 1 << 20 })
      expect(existsSync(join(snap, 'state.json'))).toBe(true)
      const again = await ctl(sock, 'x-snapshot-save', JSON.stringify({ dir: snap }))
      expect(again.stderr).toContain('already exists')
      expect(await ctl(sock, 'quit')).toMatchObject({ code: 0 })
      expect(await first.exited, first.out.stderr).toBe(0)

      const sock2 = join(dir, 'qmp2.sock')
      const second = start(['restore', snap, '--paused', '--qmp', sock2])
      await expect
        .poll(async () => existsSync(sock2) && (await status(sock2))?.status, { timeout: 30_000 })
        .toBe('paused')
      expect(await ctl(sock2, 'cont')).toMatchObject({ code: 0 })
      expect((await status(sock2)).status).toBe('running')
      // A restored machine cannot reset in place, and says why.
      expect((await ctl(sock2, 'system_reset')).stderr).toContain('restored from a snapshot')
      expect(await ctl(sock2, 'quit')).toMatchObject({ code: 0 })
      expect(await second.exited, second.out.stderr).toBe(0)
    },
    120_000,
  )
})
