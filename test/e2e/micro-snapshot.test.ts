// End to end on the real /dev/kvm (issue 15): ONE boot of the default guest on the micro board with
// virtio blk (a raw image), net (a TAP in a private network namespace), vsock (host Unix sockets)
// and rng, the serial console on stdio. The shell leaves a marker in tmpfs and on the disk, starts
// a counter, opens a vsock connection the host never answers, and the machine is paused,
// snapshotted and stopped. Then, from that one snapshot, with `vmm restore` (the CLI):
//   1. a restore onto the same TAP and disk: the shell answers, the markers are there, the counter
//      goes on, the disk reads and writes, ping over the TAP works, the held vsock connection is
//      reset (TRANSPORT_RESET, virtio 1.2 §5.10.6.6) and a new one works;
//   2. the same restore again is refused, naming the disk: the first restore wrote to it;
//   3. two clones at once, each in its own network namespace with its own TAP name, disk copy,
//      vsock socket and CID (one through the short options, one through --set): both answer,
//      reach their own host over the TAP and vsock, and write only their own disk.
// The snapshot directory is byte for byte what it was after all of it. Boots take minutes on
// kvm_pvm hosts (every guest kernel instruction is emulated); restores skip that.
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
  writeExtendedInitrd,
  writeMicroManifest,
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
if (skipReason) console.warn(`[snapshot end-to-end test skipped] ${skipReason}`)

const MiB = 1024 * 1024
const VSOCK_PORT = 5000
const HOLD_PORT = 5001
const log = (text: string) => console.log(`[e2e snapshot] ${text}`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
/** 512 bytes of `text` repeated, what the guest writes with dd at a sector. */
const sectorOf = (text: string) => Buffer.from(text.padEnd(512, '.'))

const cleanups: (() => unknown)[] = []
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

type Proc = ReturnType<typeof startRestore>
function shellOf(p: { con: unknown; write: (s: string) => void }, quiet: boolean): GuestShell {
  const sh = new GuestShell(p.con, p.write)
  sh.quiet = quiet // the terminal's echo is guest state: off since the boot, it stays off in a restore
  return sh
}
const stopped = (p: Proc | ReturnType<typeof startPausable>) => {
  if (p.child.exitCode === null) p.child.kill('SIGINT')
  return p.con.exitWithin(60_000)
}

describe.skipIf(skipReason)(
  'a booted Linux guest with blk, net, vsock and rng, snapshotted, restored and cloned',
  () => {
    it('the restored shell answers with its markers, disk, TAP and vsock; two clones run at once', {
      timeout: 45 * 60_000,
    }, async () => {
      const guest = await defaultGuest()
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-e2e-snap-'))
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
      const vsockPath = path.join(dir, 'vsock')
      const answer = vsockListener(`${vsockPath}_${VSOCK_PORT}`, 'host-a')
      const held = vsockListener(`${vsockPath}_${HOLD_PORT}`, '', { hold: true })
      cleanups.push(answer.close, held.close)
      await Promise.all([answer.listening, held.listening])
      const ns = createNetns()
      cleanups.push(ns.dispose)
      const manifest = writeMicroManifest(dir, {
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
      await sh.check('ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up')
      expect(await sh.check(`ping -c 1 -w 60 ${HOST_IP}`, 120_000)).toMatch(/1 packets received/)
      await sh.check('echo snapmark-$((6*7)) > /tmp/marker')
      await sh.check(
        `printf '%-512s' disk-before | tr ' ' . | dd of=/dev/vda bs=512 seek=2048 oflag=direct conv=fsync`,
      )
      // The counter is written to a new file and renamed, so a reader never finds it empty.
      await sh.check(
        '(i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 1; done) > /dev/null 2>&1 & true',
      )
      // A connection the host never answers: only TRANSPORT_RESET after the restore can end it.
      await sh.check(
        `(/e2e/vsock-echo ${HOLD_PORT} held; echo "held-exit $?" > /tmp/held) > /dev/null 2>&1 & true`,
      )
      await sh.check(`timeout 120 /e2e/vsock-echo ${VSOCK_PORT} before`, 180_000)
      for (let i = 0; i < 60 && held.lines.length === 0; i++) await sleep(500)
      expect(held.lines).toEqual(['held'])
      await sleep(2000)
      const countBefore = Number((await sh.check('cat /tmp/count')).trim())
      expect(countBefore).toBeGreaterThan(0)

      const control = await controlClient(controlPath)
      await control.send('pause')
      const snap = path.join(dir, 'snap')
      const ts = performance.now()
      const [, stateBytes, memoryBytes] = (await control.send(`snapshot ${snap}`)).split(' ')
      const snapshotMs = performance.now() - ts
      await control.send('stop')
      control.close()
      await a.con.exitWithin(60_000)
      const onDisk = fs.statSync(path.join(snap, 'memory')).blocks * 512
      log(
        `snapshot ${snapshotMs.toFixed(0)} ms: state ${stateBytes} B, memory ${memoryBytes} B (${onDisk} B on disk)`,
      )
      // The clones' disks: copies taken with the snapshot (a restore that writes a disk uses it up).
      const diskB = path.join(dir, 'disk-b.img')
      const diskC = path.join(dir, 'disk-c.img')
      fs.copyFileSync(disk, diskB)
      fs.copyFileSync(disk, diskC)
      const snapFiles = Object.fromEntries(
        fs.readdirSync(snap).map((f) => [f, sha256(fs.readFileSync(path.join(snap, f)))]),
      )

      // --- 1. restore onto the same TAP and disk ---
      const r = startRestore(snap, [], dir, ns.wrap)
      cleanups.push(() => stopped(r).catch(() => {}))
      const answerMs = await firstAnswer(r, r.spawnedAt)
      log(`vmm restore to the first shell answer: ${answerMs.toFixed(0)} ms`)
      const rs = shellOf(r, true)
      expect((await rs.check('cat /tmp/marker')).trim()).toBe('snapmark-42')
      const n1 = Number((await rs.check('cat /tmp/count')).trim())
      expect(n1).toBeGreaterThanOrEqual(countBefore)
      await sleep(3000)
      expect(Number((await rs.check('cat /tmp/count')).trim())).toBeGreaterThan(n1)
      // The held connection was reset at the restore, so its reader has ended.
      expect(
        await rs.check('for i in $(seq 30); do [ -e /tmp/held ] && break; sleep 1; done; cat /tmp/held'),
      ).toMatch(/held-exit \d+/)
      // The disk: the marker written before the snapshot, read past the page cache; a new write.
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
      await stopped(r)

      // --- 2. the disk was written by that restore: the same restore now is refused ---
      const refused = startRestore(snap, [], dir, ns.wrap)
      const exit = await refused.con.exitWithin(60_000)
      expect(exit.code).not.toBe(0)
      expect(refused.con.text()).toContain(`disk image ${disk} was written since the snapshot`)

      // --- 3. two clones at once, each with its own TAP, disk copy, vsock socket and CID ---
      const tapMac = ns.exec('cat', [`/sys/class/net/${ns.tap}/address`]).trim()
      const clone = (name: string, disk: string, cid: number, form: 'short' | 'set') =>
        startClone({ snap, dir, name, tapMac, disk, cid, port: VSOCK_PORT, form, cleanups })
      const clones = await Promise.all([clone('b', diskB, 4, 'short'), clone('c', diskC, 5, 'set')])
      log(
        `two clones at once, first answers: ${clones.map((c) => `${c.name} ${c.ms.toFixed(0)} ms`).join(', ')}`,
      )
      await Promise.all(
        clones.map(async ({ name, p }) => {
          const s = shellOf(p, true)
          expect((await s.check('cat /tmp/marker')).trim()).toBe('snapmark-42')
          expect(await s.check(`ping -c 2 -w 60 ${HOST_IP}`, 120_000)).toMatch(/2 packets received/)
          // A vsock connection works only if the guest took the clone's CID (the device drops others).
          expect(await s.check(`timeout 120 /e2e/vsock-echo ${VSOCK_PORT} from-${name}`, 180_000)).toContain(
            `host-${name}: from-${name}`,
          )
          await s.check(
            `printf '%-512s' clone-${name} | tr ' ' . | dd of=/dev/vda bs=512 seek=4096 oflag=direct conv=fsync`,
          )
        }),
      )
      await Promise.all(clones.map(({ p }) => stopped(p)))
      expect(fs.readFileSync(diskB).subarray(4096 * 512, 4097 * 512)).toEqual(sectorOf('clone-b'))
      expect(fs.readFileSync(diskC).subarray(4096 * 512, 4097 * 512)).toEqual(sectorOf('clone-c'))
      expect(fs.readFileSync(disk).subarray(4096 * 512, 4097 * 512)).toEqual(sectorOf('disk-after'))
      // Nothing of the snapshot directory changed through four restores.
      expect(
        Object.fromEntries(fs.readdirSync(snap).map((f) => [f, sha256(fs.readFileSync(path.join(snap, f)))])),
      ).toEqual(snapFiles)
    })
  },
)
