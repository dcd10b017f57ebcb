// pnpm bench:boot — boot the same kernel and command line under vmm's micro board and under
// `qemu-system-x86_64 -M microvm`, alternating, and report when each reaches the milestones of a
// Linux boot on its serial console, and each VMM's memory overhead (RSS minus the guest RAM it
// touched). A milestone not reached within the time limit is printed as such, never hidden: on
// kvm_pvm hosts (docs/kvm-pvm-hosts.md) vmm boots the default guest to its shell in one to two
// minutes while QEMU stops at the first emulation failure, so there is no ratio for /init there.
//
// Environment: VMM_BENCH_KERNEL (default: the default guest's vmlinux when built, else Debian's
// cloud kernel, fetched with apt-get download), BOOT_TIMEOUT seconds (default 300), ROUNDS (2).
// The command line is examples/micro.yaml's with loglevel=8, so that the early milestones print.
import { execFileSync, execSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { rssWithGuest } from '../smaps.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const TIMEOUT = Number(process.env.BOOT_TIMEOUT ?? 300) * 1000
const ROUNDS = Number(process.env.ROUNDS ?? 2)
const MEMORY_MIB = 256
const CMDLINE =
  'console=ttyS0 loglevel=8 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.nopnp ' +
  'i8042.dumbkbd swiotlb=noforce cryptomgr.notests noxsave clearcpuid=cx16,popcnt'

const MILESTONES = [
  ['kernel banner', /Linux version/],
  ['KVM detected', /Hypervisor detected: KVM/],
  ['paravirt boot', /Booting paravirtualized kernel/],
  ['/init (boot timer)', /vmm-guest: init reached|boot-timer: guest reached init/],
  ['shell prompt', /\/ # /],
]

function debianKernel() {
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'vmm', 'test-kernels')
  const vmlinux = join(dir, 'vmlinux')
  if (existsSync(vmlinux)) return vmlinux
  mkdirSync(dir, { recursive: true })
  execFileSync('apt-get', ['download', 'linux-image-6.1.0-56-cloud-amd64'], { cwd: dir, stdio: 'pipe' })
  const deb = readdirSync(dir).find((f) => f.endsWith('.deb'))
  execSync(`dpkg-deb --fsys-tarfile ${deb} | tar -xO --wildcards './boot/vmlinuz-*' > vmlinuz`, { cwd: dir })
  const b = readFileSync(join(dir, 'vmlinuz'))
  const pm = b.subarray(((b[0x1f1] || 4) + 1) * 512)
  writeFileSync(
    join(dir, 'payload.lz4'),
    pm.subarray(b.readUInt32LE(0x248), b.readUInt32LE(0x248) + b.readUInt32LE(0x24c)),
  )
  try {
    execSync('lz4 -dc payload.lz4 > vmlinux', { cwd: dir, stdio: 'pipe' })
  } catch {} // lz4 complains about the size word the kernel appends; the ELF is complete
  return vmlinux
}

async function defaultKernel() {
  if (process.env.VMM_BENCH_KERNEL) return { kernel: process.env.VMM_BENCH_KERNEL }
  try {
    const image = await import('@vmm/image')
    const g = await image.findDefaultGuest()
    if (g) return { kernel: g.vmlinux, initrd: g.initramfs }
  } catch {}
  return { kernel: debianKernel() }
}

/** Total RSS and the RSS of the guest-RAM-sized mapping(s) of `pid`, in KiB. */
function memory(pid) {
  try {
    return rssWithGuest(pid, MEMORY_MIB)
  } catch {
    return undefined
  }
}

function run(name, cmd, args, env = process.env) {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
    let consoleBytes = 0
    child.stdout.on('data', (d) => {
      consoleBytes += d.length
    })
    const reached = new Map()
    let mem
    let text = ''
    const onData = (d) => {
      text += d.toString('latin1')
      for (const [label, re] of MILESTONES)
        if (!reached.has(label) && re.test(text)) reached.set(label, performance.now() - t0)
      if (text.length > 65536) text = text.slice(-4096)
      if (reached.size === MILESTONES.length) finish()
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    const timer = setTimeout(() => finish(), TIMEOUT)
    let done = false
    function finish() {
      if (done) return
      done = true
      clearTimeout(timer)
      mem = memory(child.pid)
      child.kill('SIGKILL')
    }
    child.on('exit', () => {
      finish()
      resolve({
        name,
        reached,
        mem,
        consoleBytes,
        ms: performance.now() - t0,
        error:
          reached.size < MILESTONES.length
            ? (/emulation failure|KVM internal error[^\n]*/.exec(text)?.[0] ??
              text.trim().split('\n').slice(-2).join(' | '))
            : undefined,
      })
    })
  })
}

const { kernel, initrd } = await defaultKernel()
const dir = mkdtempSync(join(tmpdir(), 'vmm-bench-boot-'))
const manifest = join(dir, 'micro.yaml')
writeFileSync(
  manifest,
  `plugins: ['@vmm/board-micro']
machine: { memory: ${MEMORY_MIB}MiB, irqchip: true, layout: { mmio: { base: 0xc0000000, size: 0x3ec00000 } } }
components:
  kernel: { type: linux, kernel: ${JSON.stringify(kernel)}, ${initrd ? `initrd: ${JSON.stringify(initrd)}, ` : ''}cmdline: ${JSON.stringify(CMDLINE)} }
  serial: { type: serial, console: stdio, resources: { port: 0x3f8, irq: 4 } }
  i8042: { type: i8042, resources: { ports: 0x60, irq: 1 } }
  timer: { type: boot-timer, resources: { page: 0xc0000000 } }
`,
)
// The manifest's plugin resolves from the repository's node_modules.
writeFileSync(join(dir, 'package.json'), '{}')
execSync(`ln -s ${join(root, 'node_modules')} ${join(dir, 'node_modules')}`)

const statsFile = join(dir, 'exit-stats.json')
const vmm = () =>
  run('vmm', process.execPath, [join(root, 'packages/cli/dist/main.js'), 'run', manifest], {
    ...process.env,
    VMM_EXIT_STATS: statsFile, // @vmm/kvm's exit statistics (exit-stats.ts), for vmmShare()
  })
const qemu = () =>
  run('qemu', 'qemu-system-x86_64', [
    ...['-M', 'microvm,x-option-roms=off,rtc=off', '-enable-kvm', '-m', String(MEMORY_MIB)],
    ...['-nodefaults', '-nographic', '-serial', 'stdio', '-kernel', kernel],
    ...(initrd ? ['-initrd', initrd] : []),
    ...['-append', CMDLINE],
  ])

let qemuMissing
try {
  execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'pipe' })
} catch {
  qemuMissing = 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)'
}

const results = { vmm: [], qemu: [] }
for (let r = 0; r < ROUNDS; r++) {
  results.vmm.push(await vmm())
  if (!qemuMissing) results.qemu.push(await qemu())
}

const median = (xs) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : undefined)
const fmt = (ms) => (ms === undefined ? `not reached in ${TIMEOUT / 1000} s` : `${(ms / 1000).toFixed(2)} s`)
console.log(
  `bench:boot — ${kernel}${initrd ? ` + ${initrd}` : ''}, ${MEMORY_MIB} MiB, 1 vCPU, ${ROUNDS} rounds (median)`,
)
console.log(`command line: ${CMDLINE}`)
for (const [label] of MILESTONES) {
  const a = median(results.vmm.filter((x) => x.reached.has(label)).map((x) => x.reached.get(label)))
  const b = median(results.qemu.filter((x) => x.reached.has(label)).map((x) => x.reached.get(label)))
  const ratio = a !== undefined && b !== undefined ? `   ratio ${(a / b).toFixed(2)}x` : ''
  console.log(
    `${label.padEnd(20)} vmm ${fmt(a).padEnd(22)} qemu ${qemuMissing ? `(${qemuMissing})` : fmt(b)}${ratio}`,
  )
}
for (const [name, rs] of Object.entries(results)) {
  const m = rs.map((x) => x.mem).filter(Boolean)
  if (m.length === 0) continue
  const over = median(m.map((x) => x.total - x.guest))
  console.log(
    `${`${name} memory`.padEnd(20)} RSS ${median(m.map((x) => x.total))} KiB, guest RAM touched ${median(m.map((x) => x.guest))} KiB, overhead ${over} KiB`,
  )
  for (const x of rs)
    if (x.error) console.log(`${name}: stopped after ${x.reached.size} milestone(s): ${x.error}`)
}
vmmShare(results.vmm.at(-1))

/**
 * Where the VMM's own share of the boot goes, from the last vmm round's exit statistics
 * (VMM_EXIT_STATS): exits per second by kind and place, the JavaScript time per exit, console bytes.
 */
function vmmShare(last) {
  let stats
  try {
    stats = JSON.parse(readFileSync(statsFile, 'utf8'))
  } catch {
    console.log('vmm exit statistics: none written')
    return
  }
  const s = last.ms / 1000
  console.log(
    `vmm's share (last round, ${s.toFixed(1)} s to the end of the run): ${stats.exits} exits (${(stats.exits / s).toFixed(0)}/s), ` +
      `${stats.handleMs.toFixed(0)} ms in JavaScript handling them (${((stats.handleMs / stats.exits) * 1000).toFixed(1)} µs per exit, ` +
      `${((stats.handleMs / last.ms) * 100).toFixed(2)} % of the run), ${last.consoleBytes} console bytes`,
  )
  for (const r of stats.rows.slice(0, 10))
    console.log(
      `  ${r.key.padEnd(28)} ${String(r.count).padStart(9)} exits ${(r.count / s).toFixed(0).padStart(7)}/s  ${((r.ms / r.count) * 1000).toFixed(1).padStart(7)} µs each in its handler`,
    )
}
