// End to end on the real /dev/kvm (issue 15), the standard board: ONE boot of the default guest
// with virtio-pci blk, net (a TAP in a private network namespace), vsock and rng (MSI-X through
// KVM GSI routes and irqfds, found through ACPI and the PCI host bridge), the serial console on
// stdio. The shell leaves a marker in tmpfs and on the disk and starts a counter; a second disk is
// hot-plugged (ACPI PCI hot-plug) and read by the guest; then the machine is paused, snapshotted
// and stopped. From that one snapshot, with `vmm restore` (the CLI):
//   1. a restore onto the same TAP and disk, with QMP: the shell answers, the marker is there,
//      the counter goes on, the disk reads and writes, ping over the TAP works, a new vsock
//      connection works, the hot-plugged disk is still in its slot and reads back past the page
//      cache, and system_powerdown (the ACPI power button) ends the restored VMM with status 0;
//   2. two clones at once with their own TAP, disk copy, vsock socket and CID (snapshot-harness's
//      startClone, as the micro board's test runs them): both answer over the TAP and vsock.
// The snapshot directory is byte for byte what it was after all of it. The boot takes minutes on
// kvm_pvm hosts (every guest kernel instruction is emulated); restores skip it.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Kvm } from '@vmm/kvm'
import { afterAll, describe, expect, it } from 'vitest'
import { defaultGuest } from './console.js'
import {
  buildGuestTools,
  createNetns,
  GuestShell,
  HOST_IP,
  netnsUnavailable,
  vmmCli,
  writeExtendedInitrd,
  writeStandardManifest,
} from './guest-harness.mjs'
import {
  controlClient,
  firstAnswer,
  startClone,
  startPausable,
  startRestore,
  vsockListener,
} from './snapshot-harness.mjs'

const kvmUnavailable = Kvm.unavailableReason()
const skipReason = kvmUnavailable ?? netnsUnavailable()
if (skipReason) console.warn(`[standard-board snapshot end-to-end test skipped] ${skipReason}`)

const MiB = 1024 * 1024
const VSOCK_PORT = 5000
const log = (text: string) => console.log(`[e2e standard snapshot] ${text}`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
const sectorOf = (text: string) => Buffer.from(text.padEnd(512, '.'))
/** The guest's sha256sum of the hot-plugged disk's first sector, read past the page cache. */
const READ_HOT = 'dd if=/dev/vdb bs=512 count=1 iflag=direct 2>/dev/null | sha256sum'

const cleanups: (() => unknown)[] = []
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function shellOf(p: { con: unknown; write: (s: string) => void }, quiet: boolean): GuestShell {
  const sh = new GuestShell(p.con, p.write)
  sh.quiet = quiet // the terminal's echo is guest state: off since the boot, it stays off in a restore
  return sh
}
type Proc = {
  child: { exitCode: number | null; kill(s: string): void }
  con: { exitWithin(ms: number): Promise<unknown> }
}
const stopped = (p: Proc) => {
  if (p.child.exitCode === null) p.child.kill('SIGINT')
  return p.con.exitWithin(60_000)
}

describe.skipIf(skipReason)(
  'the standard board with virtio-pci blk, net, vsock and rng and a hot-plugged disk, snapshotted and restored',
  () => {
    it('the restored guest answers with its marker, counter, disks, TAP, vsock and hot-plugged disk, and powers off by ACPI', {
      timeout: 45 * 60_000,
    }, async () => {
      const guest = await defaultGuest()
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-e2e-stdsnap-'))
      cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }))
      const tools = buildGuestTools(dir, ['vsock-echo'])
      const initrd = writeExtendedInitrd(
        guest.initramfs,
        { 'e2e/vsock-echo': tools['vsock-echo'] },
        path.join(dir, 'initrd.cpio.gz'),
      )
      const disk = path.join(dir, 'disk.img')
      fs.writeFileSync(disk, '')
      fs.truncateSync(disk, 16 * MiB)
      const hot = path.join(dir, 'hot.img')
      const hotImage = new Uint8Array(MiB)
      for (let i = 0; i < 512; i += 32) hotImage.set(createHash('sha256').update(`hot ${i}`).digest(), i)
      fs.writeFileSync(hot, hotImage)
      const hotSector = sha256(hotImage.subarray(0, 512))
      const vsockPath = path.join(dir, 'vsock')
      const answer = vsockListener(`${vsockPath}_${VSOCK_PORT}`, 'host-a')
      cleanups.push(answer.close)
      await answer.listening
      const ns = createNetns('vmm-e2e-std')
      cleanups.push(ns.dispose)
      const manifest = writeStandardManifest(dir, {
        kernel: guest.vmlinux,
        initrd,
        devices: { blk: disk, net: ns.tap, rng: true, vsock: vsockPath },
      })

      // --- the one boot ---
      const controlPath = path.join(dir, 'control.sock')
      const a = startPausable(manifest, controlPath, ns.wrap)
      cleanups.push(() => stopped(a).catch(() => {}))
      const t0 = Date.now()
      await a.con.waitFor(/\/ # /, 0, 15 * 60_000)
      log(`shell after ${((Date.now() - t0) / 1000).toFixed(1)} s of boot`)
      const sh = shellOf(a, false)
      // Every virtio function interrupts by MSI-X.
      expect(await sh.check('grep -c PCI-MSI /proc/interrupts')).toMatch(/[1-9]/)
      await sh.check('ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up')
      expect(await sh.check(`ping -c 1 -w 60 ${HOST_IP}`, 120_000)).toMatch(/1 packets received/)
      await sh.check('echo snapmark-$((6*7)) > /tmp/marker')
      await sh.check(
        `printf '%-512s' disk-before | tr ' ' . | dd of=/dev/vda bs=512 seek=2048 oflag=direct conv=fsync`,
      )
      await sh.check(
        '(i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 1; done) > /dev/null 2>&1 & true',
      )
      await sh.check(`timeout 120 /e2e/vsock-echo ${VSOCK_PORT} before`, 180_000)

      // Hot-plug a second disk; the guest scans the slot (GED -> _EVT -> PCNT) and reads it.
      const control = await controlClient(controlPath)
      await control.send(
        `hotplug hot ${JSON.stringify({ type: 'virtio-blk-pci', bus: 'pci', path: hot, readOnly: true })}`,
      )
      const hotBefore = await sh.check(
        `for i in $(seq 1 120); do [ -e /sys/block/vdb ] && break; sleep 1; done; readlink -f /sys/block/vdb/device/..; ${READ_HOT}`,
        5 * 60_000,
      )
      expect(hotBefore).toMatch(new RegExp(`^${hotSector}\\s+-`, 'm'))
      const hotBdf = /\/(0000:00:[0-9a-f]{2}\.0)/.exec(hotBefore)?.[1]
      expect(hotBdf).toBeDefined()
      log(`hot-plugged disk at ${hotBdf}`)
      await sleep(2000)
      const countBefore = Number((await sh.check('cat /tmp/count')).trim())
      expect(countBefore).toBeGreaterThan(0)

      await control.send('pause')
      const snap = path.join(dir, 'snap')
      const ts = performance.now()
      const [, stateBytes, memoryBytes] = (await control.send(`snapshot ${snap}`)).split(' ')
      const snapshotMs = performance.now() - ts
      await control.send('stop')
      control.close()
      await a.con.exitWithin(60_000)
      log(`snapshot ${snapshotMs.toFixed(0)} ms: state ${stateBytes} B, memory ${memoryBytes} B`)
      // The pinned manifest has the hot-plugged disk, in its slot.
      const state = fs.readFileSync(path.join(snap, 'state.json'), 'utf8')
      expect(state).toContain('virtio-blk-pci')
      const diskB = path.join(dir, 'disk-b.img')
      const diskC = path.join(dir, 'disk-c.img')
      fs.copyFileSync(disk, diskB)
      fs.copyFileSync(disk, diskC)
      const snapFiles = Object.fromEntries(
        fs.readdirSync(snap).map((f) => [f, sha256(fs.readFileSync(path.join(snap, f)))]),
      )

      // --- 1. restore onto the same TAP and disk, with QMP ---
      const qmp = path.join(dir, 'vm.qmp')
      const r = startRestore(snap, ['--qmp', qmp], dir, ns.wrap)
      cleanups.push(() => stopped(r).catch(() => {}))
      const answerMs = await firstAnswer(r, r.spawnedAt)
      log(`vmm restore to the first shell answer: ${answerMs.toFixed(0)} ms`)
      const rs = shellOf(r, true)
      expect((await rs.check('cat /tmp/marker')).trim()).toBe('snapmark-42')
      const n1 = Number((await rs.check('cat /tmp/count')).trim())
      expect(n1).toBeGreaterThanOrEqual(countBefore)
      await sleep(3000)
      expect(Number((await rs.check('cat /tmp/count')).trim())).toBeGreaterThan(n1)
      expect(await rs.check('dd if=/dev/vda bs=512 skip=2048 count=1 iflag=direct 2>/dev/null')).toContain(
        'disk-before',
      )
      await rs.check(
        `printf '%-512s' disk-after | tr ' ' . | dd of=/dev/vda bs=512 seek=4096 oflag=direct conv=fsync`,
      )
      expect(fs.readFileSync(disk).subarray(4096 * 512, 4097 * 512)).toEqual(sectorOf('disk-after'))
      expect(await rs.check(`ping -c 3 -w 60 ${HOST_IP}`, 120_000)).toMatch(/3 packets received/)
      expect(await rs.check(`timeout 120 /e2e/vsock-echo ${VSOCK_PORT} after`, 180_000)).toContain(
        'host-a: after',
      )
      expect(await rs.check('head -c 16 /dev/hwrng | od -An -tx1 | tr -d " \\n"')).toMatch(/^[0-9a-f]{32}/m)
      // The hot-plugged disk: the same function in the same slot, its queue answering.
      const hotAfter = await rs.check(`readlink -f /sys/block/vdb/device/..; ${READ_HOT}`)
      expect(hotAfter).toContain(`/${hotBdf}`)
      expect(hotAfter).toMatch(new RegExp(`^${hotSector}\\s+-`, 'm'))
      // ACPI power-off of the restored machine: QMP system_powerdown presses the power button.
      const down = spawnSync(process.execPath, [vmmCli, 'ctl', qmp, 'system_powerdown'], { encoding: 'utf8' })
      expect(down.status, down.stderr).toBe(0)
      const exit = (await r.con.exitWithin(3 * 60_000)) as { code: number | null }
      expect(exit.code, r.con.text().slice(-2000)).toBe(0)

      // --- 2. two clones at once, each with its own TAP, disk copy, vsock socket and CID ---
      const tapMac = ns.exec('cat', [`/sys/class/net/${ns.tap}/address`]).trim()
      const clones = await Promise.all([
        startClone({
          snap,
          dir,
          name: 'b',
          tapMac,
          disk: diskB,
          cid: 4,
          port: VSOCK_PORT,
          form: 'short',
          cleanups,
        }),
        startClone({
          snap,
          dir,
          name: 'c',
          tapMac,
          disk: diskC,
          cid: 5,
          port: VSOCK_PORT,
          form: 'set',
          cleanups,
        }),
      ])
      log(
        `two clones at once, first answers: ${clones.map((c) => `${c.name} ${c.ms.toFixed(0)} ms`).join(', ')}`,
      )
      await Promise.all(
        clones.map(async ({ name, p }) => {
          const s = shellOf(p, true)
          expect((await s.check('cat /tmp/marker')).trim()).toBe('snapmark-42')
          expect(await s.check(`ping -c 2 -w 60 ${HOST_IP}`, 120_000)).toMatch(/2 packets received/)
          expect(await s.check(`timeout 120 /e2e/vsock-echo ${VSOCK_PORT} from-${name}`, 180_000)).toContain(
            `host-${name}: from-${name}`,
          )
        }),
      )
      await Promise.all(clones.map(({ p }) => stopped(p)))
      expect(
        Object.fromEntries(fs.readdirSync(snap).map((f) => [f, sha256(fs.readFileSync(path.join(snap, f)))])),
      ).toEqual(snapFiles)
    })
  },
)
