// pnpm bench:control — round-trip latency over the QMP socket while a guest runs: query-status,
// and stop followed by cont, on `vmm run --qmp` against QEMU's own QMP (`-qmp unix:...`), both on
// /dev/kvm with the same raw real-mode guest (a `jmp $` loop: the vCPU stays busy in the guest).
// The same client (@vmm/control's QmpClient) measures both; one command in flight at a time, and
// 11 ms between commands (outside the timing) for both servers, since ours answers more than 100
// commands a second with an error (its rate limit, as StratoVirt's).
// Medians and 99th percentiles; absolute times on shared machines are noise: read the ratios.
// Needs `pnpm build` first (the root script does it) and qemu-system-x86_64 for the QEMU column.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { QmpClient } from '@vmm/control'

const root = join(dirname(fileURLToPath(import.meta.url)), '../..')
const main = join(root, 'packages/cli/dist/main.js')
const QUERIES = Number(process.env.QUERIES ?? 500)
const PAIRS = Number(process.env.PAIRS ?? 100)
const dir = mkdtempSync(join(tmpdir(), 'vmm-bench-control-'))

const LOOP = Buffer.from([0xeb, 0xfe]) // jmp $
writeFileSync(join(dir, 'guest.bin'), LOOP)
writeFileSync(
  join(dir, 'machine.yaml'),
  'machine: { memory: 1MiB }\ncomponents:\n  guest: { type: raw-image, file: guest.bin, address: 0x7c00 }\n',
)
// QEMU enters at the reset vector F000:FFF0 of a -bios image: the same loop there.
const bios = Buffer.alloc(0x10000, 0xff)
LOOP.copy(bios, 0xfff0)
writeFileSync(join(dir, 'bios.bin'), bios)

const pace = (ms = 11) => new Promise((r) => setTimeout(r, ms))
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]
}

async function connect(path, child) {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null)
      throw new Error(`the server exited (${child.exitCode}) before its socket was up`)
    if (existsSync(path)) {
      try {
        return await QmpClient.connect(path)
      } catch {}
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`no QMP on ${path}`)
}

async function measure(name, argv, path) {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  try {
    const c = await connect(path, child)
    const status = await c.execute('query-status')
    if (status.status !== 'running') throw new Error(`${name}: the guest is ${status.status}`)
    for (let i = 0; i < 20; i++) {
      await c.execute('query-status') // warm-up
      await pace()
    }
    const q = []
    for (let i = 0; i < QUERIES; i++) {
      const t0 = process.hrtime.bigint()
      await c.execute('query-status')
      q.push(Number(process.hrtime.bigint() - t0) / 1e3)
      await pace()
    }
    const sc = []
    for (let i = 0; i < PAIRS; i++) {
      const t0 = process.hrtime.bigint()
      await c.execute('stop')
      await c.execute('cont')
      sc.push(Number(process.hrtime.bigint() - t0) / 1e3)
      await pace(22)
    }
    if ((await c.execute('query-status')).status !== 'running')
      throw new Error(`${name}: not running after cont`)
    await c.execute('quit').catch(() => {})
    await c.closed
    return { q, sc }
  } catch (e) {
    throw new Error(`${name}: ${e.message}\n${stderr}`)
  } finally {
    child.kill('SIGKILL')
  }
}

const rows = []
if (!existsSync('/dev/kvm')) {
  console.log('bench:control needs /dev/kvm')
  process.exit(1)
}
rows.push([
  'vmm run --qmp (KVM)',
  await measure(
    'vmm',
    [process.execPath, main, 'run', join(dir, 'machine.yaml'), '--qmp', join(dir, 'vmm.sock')],
    join(dir, 'vmm.sock'),
  ),
])
const qemuBin = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' }).stdout.trim()
if (qemuBin) {
  const qsock = join(dir, 'qemu.sock')
  rows.push([
    'QEMU microvm -qmp',
    await measure(
      'qemu',
      [
        qemuBin,
        '-M',
        'microvm,x-option-roms=off,rtc=off,isa-serial=off',
        '-enable-kvm',
        '-nodefaults',
        '-no-user-config',
        '-display',
        'none',
        '-bios',
        join(dir, 'bios.bin'),
        '-qmp',
        `unix:${qsock},server=on,wait=off`,
      ],
      qsock,
    ),
  ])
} else console.log('QEMU: qemu-system-x86_64 not found (Debian: apt-get install -y qemu-system-x86)')
rmSync(dir, { recursive: true, force: true })

const us = (x) => `${x.toFixed(0).padStart(6)} µs`
console.log(`QMP round trips, ${QUERIES} query-status and ${PAIRS} stop+cont pairs each, one in flight:`)
console.log(
  `  ${''.padEnd(22)} ${'query-status p50'.padStart(17)} ${'p99'.padStart(9)}  ${'stop+cont p50'.padStart(14)} ${'p99'.padStart(9)}`,
)
for (const [name, { q, sc }] of rows)
  console.log(
    `  ${name.padEnd(22)} ${us(quantile(q, 0.5)).padStart(17)} ${us(quantile(q, 0.99))}  ${us(quantile(sc, 0.5)).padStart(14)} ${us(quantile(sc, 0.99))}`,
  )
if (rows.length === 2) {
  const [[, v], [, qm]] = rows
  const r = (a, b) => (quantile(a, 0.5) / quantile(b, 0.5)).toFixed(2)
  console.log(
    `ratio vmm/QEMU (median; below 1: vmm faster): query-status ${r(v.q, qm.q)}, stop+cont ${r(v.sc, qm.sc)}`,
  )
}
