// pnpm bench:startup — wall time from process start to exit of `vmm run` on the raw-guest example
// (examples/debug-exit-machine: a real-mode guest that prints a line on port 0xe9 and exits through
// the debug-exit plugin), against an empty `node -e ""` and against QEMU running the same guest.
// All rows run in one process, alternating, ROUNDS rounds (default 10); medians are compared.
// Absolute times on shared machines are noise: read the ratios. Needs `pnpm build` first (the root
// script does it), /dev/kvm for the KVM and QEMU rows, and qemu-system-x86_64 for the QEMU row.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '../..')
const ROUNDS = Number(process.env.ROUNDS ?? 10)
const GREETING = 'hello from the guest\n'
const exampleDir = join(root, 'examples/debug-exit-machine')
const manifest = join(exampleDir, 'machine.yaml')
const main = join(root, 'packages/cli/dist/main.js')

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Runs argv once; returns its wall time in ms, or throws with what went wrong. */
function time(argv, expect) {
  const t0 = process.hrtime.bigint()
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', cwd: root })
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  if (r.error) throw r.error
  if (r.status !== expect.code || (expect.stdout !== undefined && r.stdout !== expect.stdout)) {
    const why = `exit ${r.status ?? r.signal}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr.trim())}`
    throw new Error(
      `${argv.join(' ')}: expected exit ${expect.code} and ${JSON.stringify(expect.stdout)}; got ${why}`,
    )
  }
  return ms
}

/**
 * A 64 KiB firmware image for `-bios`: QEMU maps it at the top of 4 GiB and its last 128 KiB (all
 * of it here) below 1 MiB, so the reset vector F000:FFF0 is offset 0xfff0. The guest's code sits at
 * offset 0 (F000:0000) and the reset vector far-jumps there; the guest is position-independent.
 */
function buildFirmware() {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-bench-startup-'))
  let code
  let from
  try {
    execFileSync('as', ['--32', '-o', join(dir, 'guest.o'), join(exampleDir, 'guest.S')])
    execFileSync('objcopy', ['-O', 'binary', join(dir, 'guest.o'), join(dir, 'guest.bin')])
    code = readFileSync(join(dir, 'guest.bin'))
    from = 'guest.S (assembled now)'
  } catch {
    code = readFileSync(join(exampleDir, 'guest.bin'))
    from = 'guest.bin (no `as`/`objcopy` here)'
  }
  const image = Buffer.alloc(0x10000, 0xff)
  code.copy(image, 0)
  Buffer.from([0xea, 0x00, 0x00, 0x00, 0xf0]).copy(image, 0xfff0) // jmp far F000:0000
  const file = join(dir, 'firmware.bin')
  writeFileSync(file, image)
  return { file, from }
}

const rows = [
  { name: 'node -e ""', argv: [process.execPath, '-e', ''], expect: { code: 0, stdout: '' } },
  {
    name: 'vmm run (KVM)',
    argv: [process.execPath, main, 'run', manifest],
    expect: { code: 0, stdout: GREETING },
  },
  {
    // What the default jail costs at start-up (as root: vmm run is jailed unless --no-jail; the
    // row above minus this; the ratio is printed below the table).
    name: 'vmm run (KVM) --no-jail',
    argv: [process.execPath, main, 'run', manifest, '--no-jail'],
    expect: { code: 0, stdout: GREETING },
  },
  {
    // What the seccomp filters `vmm run` installs by default cost at start-up: the first vmm row minus
    // this (both jailed, as root).
    name: 'vmm run (KVM) --no-seccomp',
    argv: [process.execPath, main, 'run', manifest, '--no-seccomp'],
    expect: { code: 0, stdout: GREETING },
  },
  {
    name: 'vmm run --hypervisor test',
    argv: [process.execPath, main, 'run', manifest, '--hypervisor', 'test'],
    expect: { code: 0, stdout: GREETING },
  },
]

// QEMU: the same guest bytes, debugcon on 0xe9 to stdout, isa-debug-exit on 0xf4. isa-debug-exit
// exits with (value << 1) | 1, so the guest's 0 becomes exit status 1 there.
const qemu = { name: 'QEMU microvm -bios', argv: undefined, expect: { code: 1, stdout: GREETING } }
const firmware = buildFirmware()
const qemuBin = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' }).stdout.trim()
if (!qemuBin) qemu.unavailable = 'qemu-system-x86_64 not found (Debian: apt-get install -y qemu-system-x86)'
else if (!existsSync('/dev/kvm')) qemu.unavailable = 'no /dev/kvm'
else {
  qemu.argv = [
    qemuBin,
    '-M',
    'microvm,x-option-roms=off,rtc=off,isa-serial=off',
    '-enable-kvm',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-bios',
    firmware.file,
    '-debugcon',
    'stdio',
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=4',
  ]
}
rows.push(qemu)

// One untimed run of each first: fills the page cache and the validator cache, and rules out a
// row that cannot run at all (reported, not hidden).
for (const row of rows) {
  if (row.unavailable) continue
  try {
    time(row.argv, row.expect)
  } catch (e) {
    row.unavailable = e.message.split('\n')[0]
  }
}
for (const row of rows) row.ms = []
for (let r = 0; r < ROUNDS; r++)
  for (const row of rows) if (!row.unavailable) row.ms.push(time(row.argv, row.expect))

// The framework's own share: `vmm run --timings` milestones (ms since process start), medians.
const milestones = new Map()
const components = new Map()
for (let r = 0; r < ROUNDS; r++) {
  const out = spawnSync(process.execPath, [main, 'run', manifest, '--timings'], {
    encoding: 'utf8',
    cwd: root,
  })
  if (out.status !== 0) break
  for (const line of out.stderr.split('\n')) {
    const m = /^\s+([\d.]+)\s+(.*)$/.exec(line)
    if (!m) continue
    const map = /^\S+: \w+$/.test(m[2]) ? components : milestones
    const label = m[2].replace(/ids \d+:\d+/, 'ids <uid>:<gid>') // the jail's ids differ per run
    if (!map.has(label)) map.set(label, [])
    map.get(label).push(Number(m[1]))
  }
}

const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown CPU'
const kvmModule = existsSync('/sys/module/kvm_pvm')
  ? 'kvm_pvm'
  : existsSync('/sys/module/kvm_intel')
    ? 'kvm_intel'
    : existsSync('/sys/module/kvm_amd')
      ? 'kvm_amd'
      : 'no kvm module'
console.log(`bench:startup — ${ROUNDS} rounds, alternating, median wall time from spawn to exit`)
console.log(`host: ${cpu}, ${kvmModule}, Node ${process.versions.node}`)
console.log(`QEMU firmware from examples/debug-exit-machine/${firmware.from}`)
const base = median(rows[0].ms)
for (const row of rows) {
  if (row.unavailable) {
    console.log(
      row === qemu ? `  QEMU: ${row.unavailable}` : `  ${row.name.padEnd(28)} failed: ${row.unavailable}`,
    )
    continue
  }
  const m = median(row.ms)
  const range = `[${Math.min(...row.ms).toFixed(0)}..${Math.max(...row.ms).toFixed(0)}]`
  console.log(
    `  ${row.name.padEnd(28)} ${m.toFixed(1).padStart(7)} ms ${range.padEnd(11)} ${(m / base).toFixed(2)}x node -e ""`,
  )
}
{
  const [jailed, free] = ['vmm run (KVM)', 'vmm run (KVM) --no-jail'].map((n) =>
    rows.find((r) => r.name === n),
  )
  if (!jailed.unavailable && !free.unavailable) {
    const [j, f] = [median(jailed.ms), median(free.ms)]
    const who = process.getuid?.() === 0 ? 'jailed' : 'not root, so NOT jailed'
    console.log(`  default (${who}) vs --no-jail: ${(j - f).toFixed(1)} ms more, ${(j / f).toFixed(2)}x`)
  }
}
if (milestones.size > 0) {
  console.log('vmm run --timings (KVM), medians, ms since process start:')
  for (const [label, xs] of milestones) console.log(`  ${median(xs).toFixed(1).padStart(7)}  ${label}`)
  for (const [label, xs] of components) console.log(`  ${median(xs).toFixed(2).padStart(7)}  ${label} (ms)`)
} else console.log('vmm run --timings failed; no framework breakdown')
againstQemu()

/**
 * The goal of issue 18 as ratios: vmm's first guest instruction (--timings, ms since process
 * start) and its whole run, against QEMU's whole run of the same guest, medians of this run.
 */
function againstQemu() {
  if (qemu.unavailable || !qemu.ms?.length) return
  const q = median(qemu.ms)
  const whole = rows.find((r) => r.name === 'vmm run (KVM)')
  const first = milestones.get('loaded and started: first guest instruction')
  console.log(`against QEMU's whole run (${q.toFixed(1)} ms):`)
  if (first) console.log(`  vmm first guest instruction  ${(median(first) / q).toFixed(2)}x`)
  if (whole && !whole.unavailable)
    console.log(`  vmm whole run (KVM)          ${(median(whole.ms) / q).toFixed(2)}x`)
}
