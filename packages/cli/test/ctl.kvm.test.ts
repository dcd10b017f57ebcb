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
})
