// pnpm bench:virtio — virtio data paths measured from inside the default guest (@vmm/image), on
// vmm's micro board and on `qemu-system-x86_64 -M microvm` with the same kernel, initramfs,
// command line, backing file and TAP, in one run:
//   block sequential write and read (busybox dd, bs=1M, O_DIRECT), in MB/s (10^6 bytes/s)
//   block 4 KiB random reads at queue depth 1 (O_DIRECT pread, guest-tools/randread.c), in IOPS
//   TCP guest to host over the TAP (busybox nc from a tmpfs file to a node sink in the
//   namespace), in MB/s, timed by the sink from its first byte to the end of the stream
// Each measurement is repeated REPEAT times in one boot; medians are reported, with the ratio
// vmm/QEMU where both ran. A VMM that does not reach the guest's shell within its limit is
// reported as such, never with a number: on kvm_pvm hosts QEMU 7.2 stops at the first emulation
// failure of the guest kernel (docs/kvm-pvm-hosts.md).
//
// The defaults are small: on kvm_pvm hosts every guest kernel instruction is emulated and a MiB
// through the guest kernel costs seconds. Environment: DISK_MB (8), NET_MB (1), RANDREAD (200
// reads), REPEAT (1), BOOT_LIMIT seconds
// for vmm (900), QEMU_LIMIT seconds for QEMU (300). Runs as root (network namespace + TAP).
import { execFileSync, spawn } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ensureDefaultGuest } from '@vmm/image'
import {
  buildGuestTools,
  createNetns,
  GUEST_IP,
  GuestShell,
  HOST_IP,
  MICRO_CMDLINE,
  netnsUnavailable,
  parseRealTime,
  root,
  vmmCli,
  watchConsole,
  writeExtendedInitrd,
  writeMicroManifest,
} from '../../test/e2e/guest-harness.mjs'

const env = (name, fallback) => Number(process.env[name] ?? fallback)
const DISK_MB = env('DISK_MB', 8)
const NET_MB = env('NET_MB', 1)
const RANDREAD = env('RANDREAD', 200)
const REPEAT = env('REPEAT', 1)
const BOOT_LIMIT = env('BOOT_LIMIT', 900)
const QEMU_LIMIT = env('QEMU_LIMIT', 300)
const SINK_PORT = 7001
const MAC = '06:00:0a:00:02:0f'
const log = (text) => console.log(`[bench:virtio] ${text}`)

const whyNot = netnsUnavailable()
if (whyNot) {
  console.error(`bench:virtio needs a network namespace with a TAP: ${whyNot}`)
  process.exit(1)
}

const guest = await ensureDefaultGuest({
  onProgress: (e) => {
    if (e.stage !== 'compile') log(`default guest: ${e.stage}: ${e.message}`)
  },
})
const dir = mkdtempSync(join(tmpdir(), 'vmm-bench-virtio-'))
const tools = buildGuestTools(dir, ['randread', 'pattern'])
const initrd = writeExtendedInitrd(
  guest.initramfs,
  { 'e2e/randread': tools.randread, 'e2e/pattern': tools.pattern },
  join(dir, 'initrd.cpio.gz'),
)
// The backing file: pseudo-random contents, so no VMM or host layer reads holes.
const disk = join(dir, 'disk.img')
{
  const fd = openSync(disk, 'w')
  const chunk = Buffer.alloc(1 << 20)
  for (let i = 0; i < DISK_MB; i++) writeSync(fd, randomFillSync(chunk))
  closeSync(fd)
}
const ns = createNetns('vmm-bench')
const peerArgv = ns.wrap([
  process.execPath,
  join(root, 'test/e2e/net-peer.mjs'),
  HOST_IP,
  `${SINK_PORT}`,
  '7002',
  '1',
])
const peer = spawn(peerArgv[0], peerArgv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] })
const sinkReports = []
let peerText = ''
peer.stdout.on('data', (b) => {
  peerText += b.toString()
  for (let nl = peerText.indexOf('\n'); nl >= 0; nl = peerText.indexOf('\n')) {
    const o = JSON.parse(peerText.slice(0, nl))
    peerText = peerText.slice(nl + 1)
    if (o.sink) sinkReports.push(o.sink)
  }
})

const children = new Set()
const cleanup = () => {
  for (const c of children) c.kill('SIGKILL')
  peer.kill('SIGKILL')
  ns.dispose()
  rmSync(dir, { recursive: true, force: true })
}
process.on('SIGINT', () => {
  cleanup()
  process.exit(130)
})

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** Boots `argv` in the namespace; resolves with the shell, or { failed } when it does not get there. */
async function boot(name, argv, limitS) {
  const wrapped = ns.wrap(argv)
  const t0 = performance.now()
  const child = spawn(wrapped[0], wrapped.slice(1), { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] })
  children.add(child)
  const con = watchConsole(child)
  try {
    // QEMU stops (and stays) at the first emulation failure; say so as soon as it does.
    const stopped = con.waitFor(/KVM internal error|emulation failure/, 0, limitS * 1000).then(() => {
      throw new Error('stopped on a KVM emulation failure')
    })
    stopped.catch(() => {}) // settles after the race when the guest boots
    await Promise.race([con.waitFor(/vmm-guest: init reached/, 0, limitS * 1000), stopped])
    // busybox's line editor follows its prompt with a cursor-position query (ESC [6n).
    await con.waitFor(/# (?:.\[6n)?$/, con.text().indexOf('vmm-guest: init reached'), limitS * 1000)
  } catch (e) {
    child.kill('SIGKILL')
    const tail = con
      .text()
      .replace(/\r/g, '')
      .trim()
      .split('\n')
      .slice(-4)
      .map((l) => `      | ${l}`)
      .join('\n')
    return { failed: `${(e.message.split('\n')[0] ?? '').slice(0, 160)}\n${tail}` }
  }
  log(`${name}: guest shell after ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  return { child, con, shell: new GuestShell(con, (s) => child.stdin.write(s)) }
}

async function measure(name, sh) {
  const r = { write: [], read: [], iops: [], net: [] }
  const bytes = DISK_MB * 2 ** 20
  const mb = (seconds) => bytes / seconds / 1e6
  await sh.check(`ip addr add ${GUEST_IP}/24 dev eth0 && ip link set eth0 up && ping -c 1 -w 30 ${HOST_IP}`)
  await sh.check(`/e2e/pattern ${NET_MB * 2 ** 20} 1 > /tmp/net`, 600_000)
  for (let i = 0; i < REPEAT; i++) {
    // Timed by the guest's clock (busybox time); Debian's busybox dd prints no rate.
    const w = parseRealTime(
      await sh.check(`time dd if=/dev/zero of=/dev/vda bs=1M count=${DISK_MB} oflag=direct`, 1800_000),
    )
    const rd = parseRealTime(
      await sh.check(`time dd if=/dev/vda of=/dev/null bs=1M count=${DISK_MB} iflag=direct`, 1800_000),
    )
    const rr = /randread: (\d+) reads (\d+) ns/.exec(
      await sh.check(`/e2e/randread /dev/vda ${RANDREAD}`, 1800_000),
    )
    const before = sinkReports.length
    await sh.check(`nc ${HOST_IP} ${SINK_PORT} < /tmp/net`, 1800_000)
    for (let t = 0; t < 100 && sinkReports.length === before; t++)
      await new Promise((res) => setTimeout(res, 100))
    const sink = sinkReports[before]
    if (!w || !rd || !rr || !sink || sink.bytes !== NET_MB * 2 ** 20)
      throw new Error(`${name}: unparsable result (${JSON.stringify({ w, rd, rr, sink })})`)
    r.write.push(mb(w))
    r.read.push(mb(rd))
    r.iops.push((Number(rr[1]) * 1e9) / Number(rr[2]))
    r.net.push(sink.bytes / (sink.ms / 1000) / 1e6)
    log(
      `${name} round ${i + 1}: write ${mb(w).toFixed(2)} MB/s, read ${mb(rd).toFixed(2)} MB/s, ` +
        `randread ${r.iops.at(-1).toFixed(0)} IOPS, net ${r.net.at(-1).toFixed(2)} MB/s`,
    )
  }
  return Object.fromEntries(Object.entries(r).map(([k, xs]) => [k, median(xs)]))
}

async function powerOff(session) {
  session.child.stdin.write('poweroff\n')
  const code = await Promise.race([
    session.con.exited,
    new Promise((r) => setTimeout(() => r('timeout'), 120_000)),
  ])
  if (code === 'timeout') session.child.kill('SIGKILL')
}

const results = {}
const failures = {}
try {
  const manifest = writeMicroManifest(dir, {
    kernel: guest.vmlinux,
    initrd,
    devices: { blk: disk, net: ns.tap },
  })
  const vmm = await boot('vmm', [process.execPath, vmmCli, 'run', manifest], BOOT_LIMIT)
  if (vmm.failed) failures.vmm = vmm.failed
  else {
    results.vmm = await measure('vmm', vmm.shell)
    await powerOff(vmm)
  }

  let qemuVersion
  try {
    qemuVersion = execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'pipe' })
      .toString()
      .split('\n')[0]
  } catch {
    failures.qemu = 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)'
  }
  if (qemuVersion) {
    log(`${qemuVersion}: booting the same guest (limit ${QEMU_LIMIT} s)`)
    const qemu = await boot(
      'qemu',
      [
        'qemu-system-x86_64',
        ...['-M', 'microvm,x-option-roms=off,rtc=off', '-enable-kvm', '-smp', '1'],
        ...['-m', '256', '-nodefaults', '-display', 'none', '-serial', 'stdio'],
        ...['-kernel', guest.vmlinux, '-initrd', initrd, '-append', MICRO_CMDLINE],
        ...['-drive', `file=${disk},format=raw,if=none,id=d0`, '-device', 'virtio-blk-device,drive=d0'],
        ...['-netdev', `tap,id=n0,ifname=${ns.tap},script=no,downscript=no`],
        ...['-device', `virtio-net-device,netdev=n0,mac=${MAC}`],
      ],
      QEMU_LIMIT,
    )
    if (qemu.failed) failures.qemu = `did not reach the guest shell within ${QEMU_LIMIT} s: ${qemu.failed}`
    else {
      results.qemu = await measure('qemu', qemu.shell)
      await powerOff(qemu)
    }
  }
} finally {
  cleanup()
}

const rows = [
  ['block sequential write, bs=1M O_DIRECT', 'write', 'MB/s'],
  ['block sequential read, bs=1M O_DIRECT', 'read', 'MB/s'],
  ['block 4 KiB random read, QD1 O_DIRECT', 'iops', 'IOPS'],
  ['TCP guest to host (nc)', 'net', 'MB/s'],
]
const fmt = (v, unit) => (v === undefined ? '-' : `${v.toFixed(unit === 'IOPS' ? 0 : 2)} ${unit}`)
console.log(
  `\nvirtio from the guest, medians of ${REPEAT} (disk ${DISK_MB} MiB, net ${NET_MB} MiB, ${RANDREAD} random reads):`,
)
console.log(`${'measurement'.padEnd(42)}${'vmm'.padStart(14)}${'QEMU'.padStart(14)}   vmm/QEMU`)
for (const [label, key, unit] of rows) {
  const a = results.vmm?.[key]
  const b = results.qemu?.[key]
  const ratio = a !== undefined && b !== undefined ? (a / b).toFixed(2) : 'n/a'
  console.log(`${label.padEnd(42)}${fmt(a, unit).padStart(14)}${fmt(b, unit).padStart(14)}   ${ratio}`)
}
for (const [name, why] of Object.entries(failures)) console.log(`\n${name}: ${why}`)
if (failures.qemu) console.log('No ratios: QEMU produced no measurement on this host.')
process.exit(results.vmm ? 0 : 1)
