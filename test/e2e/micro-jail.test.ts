// End to end under the jailer (issue 17): `vmm jail ... -- run` of the micro board (the harness's
// manifest: examples/micro.yaml's guest and board, plus virtio-blk on a raw image, virtio-rng and
// virtio-console on a socket) boots the default guest to its shell as an unprivileged uid, in its
// own namespaces and root, under a cgroup memory limit. The serial console (the VMM's stdio,
// passed through the jail) answers a command that reads the virtio-rng device; the guest writes
// the disk (bound in read-write) and the host reads it; the virtio-console socket and the QMP
// socket, made in a directory bound in from outside, are used from outside; SIGTERM (forwarded by
// the jail to the VMM) powers the guest off with exit status 0. Afterwards the jail directory and
// cgroup are gone.
// One boot takes minutes on kvm_pvm hosts (docs/kvm-pvm-hosts.md).
import { spawn, spawnSync } from 'node:child_process'
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Kvm } from '@vmm/kvm'
import { describe, expect, it } from 'vitest'
import { consoleOf, defaultGuest } from './console.js'
import { writeMicroManifest } from './guest-harness.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '../..')
const cli = join(root, 'packages/cli/dist/main.js')
const skip = process.getuid?.() !== 0 ? 'vmm jail needs root' : Kvm.unavailableReason()
if (skip) console.warn(`[jailed Linux end-to-end test skipped] ${skip}`)

const BOOT_LIMIT_MS = 15 * 60_000

describe.skipIf(skip)('the micro board with virtio devices under vmm jail', () => {
  it('boots to the shell as uid 65534; virtio-rng, a read-write disk, a console socket and QMP work from outside; SIGTERM powers it off with status 0', {
    timeout: 45 * 60_000,
  }, async () => {
    const guest = await defaultGuest()
    const dir = mkdtempSync(join(tmpdir(), 'vmm-jail-e2e-'))
    const chroot = join(dir, 'jails')
    // The VMM's own: its disk and the directory its sockets are made in.
    const disk = join(dir, 'disk.img')
    writeFileSync(disk, '')
    truncateSync(disk, 1 << 20)
    chownSync(disk, 65534, 65534)
    const run = join(dir, 'run')
    mkdirSync(run)
    chownSync(run, 65534, 65534)
    const hvcPath = join(run, 'hvc.sock')
    const qmp = join(run, 'vm.qmp')
    const manifest = writeMicroManifest(dir, {
      kernel: guest.vmlinux,
      initrd: guest.initramfs,
      devices: { blk: disk, rng: true, console: hvcPath },
    })
    // Unique per run: a run killed mid-way leaves its cgroup behind, and vmm jail never reuses one.
    const jailId = `micro-e2e-${process.pid}`
    const started = Date.now()
    const child = spawn(
      process.execPath,
      [
        cli,
        'jail',
        '--id',
        jailId,
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
        manifest,
        '--qmp',
        qmp,
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
      const proc = readFileSync(`/proc/${pid}/status`, 'utf8')
      expect(proc).toMatch(/^Uid:\s+65534\s+65534\s+65534\s+65534$/m)
      expect(proc).toMatch(/^NSpid:\s+\d+\s+2$/m)
      expect(readFileSync(`/proc/${pid}/cgroup`, 'utf8')).toMatch(
        new RegExp(`^\\d+:memory:.*/vmm-jail-${jailId}$`, 'm'),
      )

      // Computed by the guest: 16 bytes from the virtio-rng device the jailed VMM serves.
      const mark = con.text().length
      child.stdin.write(
        'echo "jail: $((6 * 7)) $(head -c 16 /dev/hwrng | wc -c) $(cat /sys/class/misc/hw_random/rng_current)"\n',
      )
      // The whole line: the console delivers it in pieces, and `\S+` alone matches a partial word.
      const answer = await con.waitFor(/jail: 42 16 \S+\r?\n/, mark, 5 * 60_000)
      console.log(`[e2e jail] guest answered: ${/jail: 42 16 \S+/.exec(answer)![0]}`)
      expect(answer).toMatch(/jail: 42 16 virtio_rng/)

      // The disk, bound in read-write: what the guest writes is in the host's file.
      const wrote = con.text().length
      child.stdin.write(
        'echo "jailed-disk-$((6 * 7))" | dd of=/dev/vda conv=fsync 2>/dev/null; echo "disk: $?"\n',
      )
      await con.waitFor(/disk: 0/, wrote, 5 * 60_000)
      expect(readFileSync(disk, 'latin1').slice(0, 15)).toBe('jailed-disk-42\n')

      // The virtio-console socket, from outside: the guest's line arrives.
      const hvc = connect(hvcPath)
      let fromGuest = ''
      hvc.on('data', (b) => {
        fromGuest += b.toString('latin1')
      })
      await new Promise<void>((r, j) => hvc.once('connect', r).once('error', j))
      child.stdin.write('echo "hvc-$((6 * 7))-from-jail" > /dev/hvc0\n')
      for (let i = 0; i < 1200 && !fromGuest.includes('hvc-42-from-jail'); i++)
        await new Promise((r) => setTimeout(r, 100))
      expect(fromGuest).toContain('hvc-42-from-jail')
      hvc.destroy()

      // QMP, from outside.
      const status = spawnSync(process.execPath, [cli, 'ctl', qmp, 'query-status'], { encoding: 'utf8' })
      expect(JSON.parse(status.stdout)).toMatchObject({ running: true, status: 'running' })

      child.kill('SIGTERM')
      const exit = await con.exitWithin(5 * 60_000)
      expect(con.text()).toContain('asked the guest to shut down (through i8042)')
      expect(exit, con.text().slice(-3000)).toEqual({ code: 0, signal: null })
      expect(readdirSync(chroot)).toEqual([])
      expect(existsSync(`/proc/${pid}`)).toBe(false)
      expect(existsSync(qmp) || existsSync(hvcPath)).toBe(false) // the VMM removed its sockets
      console.log(
        `[e2e jail] powered off, status 0 after ${((Date.now() - started) / 1000).toFixed(1)} s wall`,
      )
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
