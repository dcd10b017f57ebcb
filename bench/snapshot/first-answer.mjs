// node bench/snapshot/first-answer.mjs — the experiment behind "the slow first answer after a
// restore" (docs/kvm-pvm-hosts.md): one boot of the default guest, one snapshot, then restores that
// differ in one thing each, every one timed from `vmm restore`'s spawn to the shell's answer:
//   stdio          the serial console on stdio, as snapshotted (the baseline);
//   socket         the console moved to a Unix socket (--set serial.console=socket): the console
//                  the first measurements used, typed into once the client is connected;
//   clock +N s     the saved guest clock (KVM_SET_CLOCK) moved N s later than the pause, as a
//                  snapshot that read the clock when it was written, not at pause, did.
// RTC=1 adds the CMOS RTC. Each variant runs ROUNDS times (default 2); a copy of the snapshot directory with the memory
// file hard-linked (a restore never writes it) carries the changed clock.
import { createHash } from 'node:crypto'
import { linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ensureDefaultGuest } from '@vmm/image'
import { writeMicroManifest } from '../../test/e2e/guest-harness.mjs'
import { controlClient, firstAnswer, startPausable, startRestore } from '../../test/e2e/snapshot-harness.mjs'

const ROUNDS = Number(process.env.ROUNDS ?? 2)
const CLOCK_SHIFTS_S = [0.3, 5]

/** A copy of snapshot `snap` whose saved VM clock is `seconds` later. */
function withClockShift(snap, out, seconds) {
  mkdirSync(out)
  linkSync(join(snap, 'memory'), join(out, 'memory'))
  const state = JSON.parse(readFileSync(join(snap, 'state.json'), 'utf8'))
  const clock = Buffer.from(state.vm.clock.$bytes, 'base64')
  clock.writeBigUInt64LE(clock.readBigUInt64LE(0) + BigInt(Math.round(seconds * 1e9)))
  state.vm.clock.$bytes = clock.toString('base64')
  const text = Buffer.from(JSON.stringify(state))
  writeFileSync(join(out, 'state.json'), text)
  const header = JSON.parse(readFileSync(join(snap, 'snapshot.json'), 'utf8'))
  header.state.bytes = text.length
  header.state.sha256 = createHash('sha256').update(text).digest('hex')
  writeFileSync(join(out, 'snapshot.json'), JSON.stringify(header))
  return out
}

const stop = async (p) => {
  if (p.child.exitCode === null) p.child.kill('SIGINT')
  await p.con.exitWithin(60_000)
}

/** The first answer through the console socket at `path`, timed from `since`. */
async function socketAnswer(path, since) {
  let socket
  for (let i = 0; i < 600 && !socket; i++) {
    socket = await new Promise((resolve) => {
      const s = connect(path)
      s.once('connect', () => resolve(s)).once('error', () => resolve(undefined))
    })
    if (!socket) await new Promise((r) => setTimeout(r, 20))
  }
  let text = ''
  return new Promise((resolve) => {
    socket.on('data', (d) => {
      text += d.toString('latin1')
      if (/answer-42/.test(text)) {
        socket.destroy()
        resolve(performance.now() - since)
      }
    })
    socket.write('echo answer-$((6*7))\n')
  })
}

const guest = await ensureDefaultGuest({})
const dir = mkdtempSync(join(tmpdir(), 'vmm-first-answer-'))
try {
  const manifest = writeMicroManifest(dir, {
    kernel: guest.vmlinux,
    initrd: guest.initramfs,
    devices: { rng: true },
  })
  // RTC=1: with the CMOS RTC the first measurements had (microManifest has none).
  if (process.env.RTC === '1')
    writeFileSync(
      manifest,
      `${readFileSync(manifest, 'utf8')}  rtc:\n    type: cmos-rtc\n    resources: { ports: 0x70, irq: 8 }\n`,
    )
  const controlPath = join(dir, 'control.sock')
  const a = startPausable(manifest, controlPath)
  await a.con.waitFor(/\/ # /, 0, 15 * 60_000)
  const running = await firstAnswer(a, performance.now())
  await new Promise((r) => setTimeout(r, 2000))
  const control = await controlClient(controlPath)
  await control.send('pause')
  const snap = join(dir, 'snap')
  await control.send(`snapshot ${snap}`)
  await control.send('stop')
  control.close()
  await a.con.exitWithin(60_000)
  console.log(`on the running machine: ${running.toFixed(0)} ms`)

  const variants = [
    ['stdio', snap, []],
    ['socket', snap, ['--set', 'serial.console=socket', '--set', `serial.path=${join(dir, 'con.sock')}`]],
    ...CLOCK_SHIFTS_S.map((s) => [`clock +${s} s`, withClockShift(snap, join(dir, `snap-${s}`), s), []]),
  ]
  for (const [name, from, args] of variants) {
    const times = []
    for (let r = 0; r < ROUNDS; r++) {
      const p = startRestore(from, args, dir)
      times.push(
        name === 'socket'
          ? await socketAnswer(join(dir, 'con.sock'), p.spawnedAt)
          : await firstAnswer(p, p.spawnedAt),
      )
      const inside = /restored in ([\d.]+) ms/.exec(p.con.text())?.[1]
      await stop(p)
      times[times.length - 1] = `${times.at(-1).toFixed(0)} ms (restore+resume ${inside ?? '?'} ms)`
    }
    console.log(`${name.padEnd(12)} ${times.join(', ')}`)
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
process.exit(0)
