// End to end with a real guest (issue 16, the rootfs shared, not copied): ONE boot of the default
// guest on the micro board with two virtio-9p devices over temporary host directories, one
// read-write and one read-only. The guest's busybox shell mounts them with Linux's 9p client
// (trans=virtio, 9p2000.L, msize=262144) and creates, writes, reads, renames, links, chmods,
// chowns and removes; the test then checks the host directory: contents, owners, modes, symlink
// targets, what is gone. A host file is read by the guest (sha256 of 4 MiB), a copy made by the
// guest is checked byte for byte, a symlink to /etc is resolved by the guest in its own tree (the
// host's /etc is never written), and the read-only share refuses writes. dd gives a rough
// throughput (on kvm_pvm hosts every guest kernel instruction is emulated: slow, see the log).
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import {
  appendFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Kvm } from '@vmm/kvm'
import { describe, expect, it } from 'vitest'
import { consoleOf, defaultGuest } from './console.js'
import { GuestShell, parseRealTime, root, vmmCli, writeMicroManifest } from './guest-harness.mjs'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[micro 9p end-to-end test skipped] ${kvmUnavailable}`)

const BOOT_LIMIT_MS = 15 * 60_000
const RANDOM_BYTES = 4 * 1024 * 1024
const DD_MIB = 16
const log = (text: string) => console.log(`[e2e 9p] ${text}`)
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

describe.skipIf(kvmUnavailable)('virtio-9p in a real Linux guest on the micro board', () => {
  it('the guest mounts a host directory and its writes land there with their owners and modes', {
    timeout: 45 * 60_000,
  }, async () => {
    const guest = await defaultGuest()
    const dir = mkdtempSync(join(tmpdir(), 'vmm-e2e-9p-'))
    const share = join(dir, 'share')
    const roShare = join(dir, 'ro')
    mkdirSync(share)
    mkdirSync(roShare)
    writeFileSync(join(share, 'host-file.txt'), 'from the host\n')
    const random = randomBytes(RANDOM_BYTES)
    writeFileSync(join(share, 'random.bin'), random)
    symlinkSync('/etc', join(share, 'etc-link'))
    writeFileSync(join(roShare, 'ro-file.txt'), 'read only\n')
    const probe = `vmm-9p-probe-${process.pid}`

    const manifest = writeMicroManifest(dir, { kernel: guest.vmlinux, initrd: guest.initramfs, devices: {} })
    appendFileSync(
      manifest,
      [
        '  share:',
        '    type: virtio-9p',
        '    tag: share',
        `    path: ${JSON.stringify(share)}`,
        '    resources: { regs: 0xc0001000, irq: 5 }',
        '  roshare:',
        '    type: virtio-9p',
        '    tag: roshare',
        `    path: ${JSON.stringify(roShare)}`,
        '    readonly: true',
        '    resources: { regs: 0xc0002000, irq: 6 }',
        '',
      ].join('\n'),
    )
    const started = Date.now()
    const child = spawn(process.execPath, [vmmCli, 'run', manifest], {
      cwd: root,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    const con = consoleOf(child)
    try {
      await con.waitFor(/vmm-guest: init reached/, 0, BOOT_LIMIT_MS)
      log(`/init after ${((Date.now() - started) / 1000).toFixed(1)} s wall`)
      await con.waitFor(/# (?:.\[6n)?$/, con.text().indexOf('vmm-guest: init reached'), 5 * 60_000)
      const sh = new GuestShell(con, (s: string) => child.stdin.write(s))

      await sh.check('mkdir -p /mnt/share /mnt/ro')
      await sh.check('mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /mnt/share')
      await sh.check('mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 roshare /mnt/ro')
      log(`mounted: ${(await sh.check('grep 9p /proc/mounts')).trim().replace(/\n/g, ' | ')}`)

      // A host file seen by the guest, small and large.
      expect(await sh.check('cat /mnt/share/host-file.txt')).toContain('from the host')
      const guestSum = await sh.check('sha256sum /mnt/share/random.bin')
      expect(guestSum).toContain(sha256(random))

      // The guest's writes.
      await sh.check('echo hello-from-guest > /mnt/share/new.txt')
      await sh.check('mkdir -p /mnt/share/dir/sub /mnt/share/dir/gone')
      await sh.check('mv /mnt/share/new.txt /mnt/share/dir/moved.txt')
      await sh.check('ln -s moved.txt /mnt/share/dir/link && ln /mnt/share/dir/moved.txt /mnt/share/hard')
      expect((await sh.check('readlink /mnt/share/dir/link')).trim()).toBe('moved.txt')
      expect(await sh.check('cat /mnt/share/dir/link')).toContain('hello-from-guest')
      await sh.check('chmod 640 /mnt/share/dir/moved.txt && chown 1234:5678 /mnt/share/dir/moved.txt')
      expect((await sh.check("stat -c '%u:%g %a' /mnt/share/dir/moved.txt")).trim()).toBe('1234:5678 640')
      await sh.check('touch /mnt/share/tmp && rm /mnt/share/tmp && rmdir /mnt/share/dir/gone')
      await sh.check('echo appended >> /mnt/share/dir/moved.txt && truncate -s 3 /mnt/share/hard')
      await sh.check('cp /mnt/share/random.bin /mnt/share/copy.bin')
      const listing = await sh.check('ls -la /mnt/share /mnt/share/dir')
      expect(listing).toContain('moved.txt')
      // A symlink to /etc is the guest's own /etc: the write lands in the guest, not on the host.
      await sh.check(`echo probe > /mnt/share/etc-link/${probe}`)
      expect(await sh.check(`cat /etc/${probe}`)).toContain('probe')

      // The read-only share (mounted read-write in the guest: the server refuses) reads, and refuses writes.
      expect(await sh.check('cat /mnt/ro/ro-file.txt')).toContain('read only')
      const refused = await sh.run('touch /mnt/ro/nope')
      expect(refused.status).not.toBe(0)
      expect(refused.output).toMatch(/Read-only file system/)

      // Throughput, roughly (dd on a 9p file; cache=none: every read and write is a 9P request).
      const w = await sh.check(`time dd if=/dev/zero of=/mnt/share/big bs=256k count=${DD_MIB * 4} 2>&1`)
      const r = await sh.check('time dd if=/mnt/share/big of=/dev/null bs=256k 2>&1')
      const secs = (t: string) => parseRealTime(t) ?? Number.NaN
      log(
        `dd write ${DD_MIB} MiB: ${secs(w)} s (${(DD_MIB / secs(w)).toFixed(1)} MiB/s), read: ${secs(r)} s (${(DD_MIB / secs(r)).toFixed(1)} MiB/s)`,
      )
      await sh.check('rm /mnt/share/big && umount /mnt/share && umount /mnt/ro')

      const mark = con.text().length
      child.stdin.write('poweroff\n')
      const exit = await con.exitWithin(5 * 60_000)
      expect(con.text().slice(mark)).toMatch(/reboot: (Power down|System halted)/)
      expect(exit, con.text().slice(-3000)).toEqual({ code: 0, signal: null })

      // The host directory after the guest.
      const moved = join(share, 'dir/moved.txt')
      expect(readFileSync(moved, 'utf8')).toBe('hel')
      const st = statSync(moved)
      expect([st.uid, st.gid, st.mode & 0o7777, st.nlink]).toEqual([1234, 5678, 0o640, 2])
      expect(readlinkSync(join(share, 'dir/link'))).toBe('moved.txt')
      expect(lstatSync(join(share, 'dir/link')).isSymbolicLink()).toBe(true)
      expect(statSync(join(share, 'dir/sub')).isDirectory()).toBe(true)
      for (const gone of ['new.txt', 'tmp', 'dir/gone', 'big'])
        expect(existsSync(join(share, gone))).toBe(false)
      expect(sha256(readFileSync(join(share, 'copy.bin')))).toBe(sha256(random))
      expect(existsSync(`/etc/${probe}`)).toBe(false)
      expect(existsSync(join(roShare, 'nope'))).toBe(false)
      log(`done after ${((Date.now() - started) / 1000).toFixed(1)} s wall`)
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
