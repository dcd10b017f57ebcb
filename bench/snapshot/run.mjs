// pnpm bench:snapshot — what a snapshot buys, side by side in one run, on the default guest
// (micro board, 256 MiB, 1 vCPU, virtio blk + rng + vsock, serial console on stdio):
//   cold     `vmm run` (pausable-vmm.mjs: the CLI's resolution and KVM hypervisor, with a control
//            socket to snapshot it) from spawn to the shell's answer to `echo`, typed at the prompt;
//   snapshot Machine.snapshot of the paused machine: time, state and memory file size (on disk);
//   restore  `vmm restore <dir> --disk blk=<copy>` from spawn to the answer to `echo`, typed at
//            once (ROUNDS times, each on its own copy of the disk), the part of it spent inside
//            Machine.restore + resume (VMM_RESTORE_TIMINGS), the next answer, and the process's RSS
//            right after the first answer against the guest RAM the guest had touched (the memory
//            file's allocated blocks: zero pages are holes);
//   ratio    restore / cold (the goal: <= 1/100 here, and under 500 ms);
//   qemu     the same for QEMU where it can run one (bench/snapshot/qemu.mjs: a tiny real-mode
//            guest, QEMU's migrate-to-file and -incoming against vmm's snapshot and restore; on
//            kvm_pvm hosts QEMU cannot boot the Linux guest at all, see bench:boot).
// `--board standard` runs the same on the standard board (virtio-pci blk + rng + vsock with MSI-X,
// ACPI, the PCI host bridge) and leaves QEMU's row out (its guest is the same tiny one either way).
// Environment: ROUNDS (default 3), BOOT_TIMEOUT seconds (default 900).
import { copyFileSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ensureDefaultGuest } from '@vmm/image'
import { writeMicroManifest, writeStandardManifest } from '../../test/e2e/guest-harness.mjs'
import { controlClient, firstAnswer, startPausable, startRestore } from '../../test/e2e/snapshot-harness.mjs'
import { rssWithGuest } from '../smaps.mjs'
import { qemuSideBySide } from './qemu.mjs'

const ROUNDS = Number(process.env.ROUNDS ?? 3)
const BOOT_TIMEOUT = Number(process.env.BOOT_TIMEOUT ?? 900) * 1000
const MEMORY_MIB = 256
const boardAt = process.argv.indexOf('--board')
const BOARD = boardAt > 0 ? process.argv[boardAt + 1] : 'micro'
if (BOARD !== 'micro' && BOARD !== 'standard') throw new Error(`--board ${BOARD}: expected micro or standard`)

const stop = async (p) => {
  if (p.child.exitCode === null) p.child.kill('SIGINT')
  await p.con.exitWithin(60_000)
}

const guest = await ensureDefaultGuest({})
const dir = mkdtempSync(join(tmpdir(), 'vmm-bench-snapshot-'))
try {
  const disk = join(dir, 'disk.img')
  writeFileSync(disk, '')
  truncateSync(disk, 16 << 20)
  const manifest = (BOARD === 'standard' ? writeStandardManifest : writeMicroManifest)(dir, {
    kernel: guest.vmlinux,
    initrd: guest.initramfs,
    memory: `${MEMORY_MIB}MiB`,
    devices: { blk: disk, rng: true, vsock: join(dir, 'vsock') },
  })

  // --- cold boot ---
  const controlPath = join(dir, 'control.sock')
  const t0 = performance.now()
  const a = startPausable(manifest, controlPath)
  await a.con.waitFor(/\/ # /, 0, BOOT_TIMEOUT)
  const coldMs = await firstAnswer(a, t0)
  await new Promise((r) => setTimeout(r, 2000))
  const control = await controlClient(controlPath)
  await control.send('pause')
  const snap = join(dir, 'snap')
  const ts = performance.now()
  const [, stateBytes, memoryBytes] = (await control.send(`snapshot ${snap}`)).split(' ')
  const snapshotMs = performance.now() - ts
  await control.send('stop')
  control.close()
  await a.con.exitWithin(60_000)
  const memoryOnDisk = statSync(join(snap, 'memory')).blocks * 512

  // --- restores ---
  const rounds = []
  for (let r = 0; r < ROUNDS; r++) {
    const copy = join(dir, `disk-${r}.img`)
    copyFileSync(disk, copy)
    const p = startRestore(snap, ['--disk', `blk=${copy}`], dir)
    const answerMs = await firstAnswer(p, p.spawnedAt)
    const mem = rssWithGuest(p.child.pid, MEMORY_MIB)
    const inside = Number(/restored in ([\d.]+) ms/.exec(p.con.text())?.[1] ?? Number.NaN)
    const tn = performance.now()
    const nextMs = await firstAnswer(p, tn, 'next')
    rounds.push({ answerMs, inside, nextMs, mem })
    await stop(p)
  }

  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
  const ms = (v) => `${v.toFixed(0)} ms`
  const restoreMs = median(rounds.map((r) => r.answerMs))
  console.log(
    `bench:snapshot — default guest, ${BOARD} board, ${MEMORY_MIB} MiB, 1 vCPU, blk + rng + vsock${BOARD === 'standard' ? ' on virtio-pci' : ''}; ${ROUNDS} restores (median)`,
  )
  console.log(`cold boot to the first shell answer   ${ms(coldMs)}`)
  console.log(
    `snapshot                              ${ms(snapshotMs)}; state ${stateBytes} B, memory file ${memoryBytes} B, ${memoryOnDisk} B on disk (RAM the guest touched)`,
  )
  console.log(
    `restore to the first shell answer     ${ms(restoreMs)} (each: ${rounds.map((r) => ms(r.answerMs)).join(', ')})`,
  )
  console.log(
    `  of which Machine.restore + resume   ${ms(median(rounds.map((r) => r.inside)))}; the next answer ${ms(median(rounds.map((r) => r.nextMs)))}`,
  )
  console.log(
    `ratio restore / cold                  1/${(coldMs / restoreMs).toFixed(0)} (${(restoreMs / coldMs).toFixed(4)})`,
  )
  const guestKiB = median(rounds.map((r) => r.mem.guest))
  console.log(
    `RSS after restore                     ${median(rounds.map((r) => r.mem.total))} KiB in all, guest RAM ${guestKiB} KiB resident of ${MEMORY_MIB * 1024} KiB; ` +
      `the guest had touched ${Math.round(memoryOnDisk / 1024)} KiB (resident / touched ${(guestKiB / (memoryOnDisk / 1024)).toFixed(2)})`,
  )
  if (BOARD === 'micro') await qemuSideBySide(dir)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
// A QMP client or a killed child's pipe may keep the loop alive; the run is over.
process.exit(0)
