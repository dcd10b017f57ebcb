// End to end under the jailer (issue 17): `vmm jail ... -- run examples/micro.yaml` boots the
// default guest to its shell as an unprivileged uid, in its own namespaces and root, under a
// cgroup memory limit; the serial console (the VMM's stdio, passed through the jail) answers a
// command that reads the virtio-rng device, and SIGTERM (forwarded by the jail to the VMM) powers
// the guest off with exit status 0. Afterwards the jail directory and cgroup are gone.
// One boot takes minutes on kvm_pvm hosts (docs/kvm-pvm-hosts.md).
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { linkDefaultGuest } from '@vmm/image'
import { Kvm } from '@vmm/kvm'
import { describe, expect, it } from 'vitest'
import { consoleOf, defaultGuest } from './console.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '../..')
const cli = join(root, 'packages/cli/dist/main.js')
const skip = process.getuid?.() !== 0 ? 'vmm jail needs root' : Kvm.unavailableReason()
if (skip) console.warn(`[jailed Linux end-to-end test skipped] ${skip}`)

const BOOT_LIMIT_MS = 15 * 60_000

describe.skipIf(skip)('examples/micro.yaml under vmm jail', () => {
  it('boots to the shell as uid 65534, its virtio-rng answers, and SIGTERM powers it off with status 0', {
    timeout: 45 * 60_000,
  }, async () => {
    const guest = await defaultGuest()
    linkDefaultGuest(guest, join(root, 'examples/.guest'))
    const chroot = mkdtempSync(join(tmpdir(), 'vmm-jail-e2e-'))
    const started = Date.now()
    const child = spawn(
      process.execPath,
      [
        cli,
        'jail',
        '--id',
        'micro-e2e',
        '--uid',
        '65534',
        '--gid',
        '65534',
        '--chroot-base',
        chroot,
        '--cgroup',
        'memory.limit_in_bytes=768MiB',
        '--',
        'run',
        'examples/micro.yaml',
      ],
      { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] },
    )
    const con = consoleOf(child)
    try {
      await con.waitFor(/vmm-guest: init reached/, 0, BOOT_LIMIT_MS)
      await con.waitFor(/\/ # /, con.text().indexOf('vmm-guest: init reached'), 5 * 60_000)
      console.log(`[e2e jail] shell after ${((Date.now() - started) / 1000).toFixed(1)} s wall`)

      // The VMM is the jail's pid 2, as nobody, in the jail's memory cgroup.
      const vmm = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim()
      const init = readFileSync(`/proc/${vmm}/task/${vmm}/children`, 'utf8').trim()
      const pid = readFileSync(`/proc/${init}/task/${init}/children`, 'utf8').trim()
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      expect(status).toMatch(/^Uid:\s+65534\s+65534\s+65534\s+65534$/m)
      expect(status).toMatch(/^NSpid:\s+\d+\s+2$/m)
      expect(readFileSync(`/proc/${pid}/cgroup`, 'utf8')).toMatch(/^\d+:memory:.*\/vmm-jail-micro-e2e$/m)

      // Computed by the guest: 16 bytes from the virtio-rng device the jailed VMM serves.
      const mark = con.text().length
      child.stdin.write(
        'echo "jail: $((6 * 7)) $(head -c 16 /dev/hwrng | wc -c) $(cat /sys/class/misc/hw_random/rng_current)"\n',
      )
      const answer = await con.waitFor(/jail: 42 16 \S+/, mark, 5 * 60_000)
      console.log(`[e2e jail] guest answered: ${/jail: 42 16 \S+/.exec(answer)![0]}`)
      expect(answer).toMatch(/jail: 42 16 virtio_rng/)

      child.kill('SIGTERM')
      const exit = await con.exitWithin(5 * 60_000)
      expect(con.text()).toContain('asked the guest to shut down (through i8042)')
      expect(exit, con.text().slice(-3000)).toEqual({ code: 0, signal: null })
      expect(readdirSync(chroot)).toEqual([])
      expect(existsSync(`/proc/${pid}`)).toBe(false)
      console.log(
        `[e2e jail] powered off, status 0 after ${((Date.now() - started) / 1000).toFixed(1)} s wall`,
      )
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      rmSync(chroot, { recursive: true, force: true })
    }
  })
})
