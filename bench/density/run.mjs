// pnpm bench:density — memory per VM: N machines at the same point at once, and for each the
// memory that is the VMM's own: USS (Private_Clean + Private_Dirty) and PSS from
// /proc/<pid>/smaps_rollup, minus the guest RAM the guest touched (the Rss of the guest-RAM
// mapping in /proc/<pid>/smaps). Side by side with QEMU on the same guest where QEMU gets there.
//
//   GUEST=raw    (default) a real-mode guest that prints a byte on port 0xe9 and halts with
//                interrupts off (the in-kernel irqchip parks the vCPU): vmm and QEMU microvm, a
//                ratio. Seconds.
//   GUEST=linux  examples/micro.yaml's machine with the default guest (~/.cache/vmm, `vmm image
//                build`), sampled at the shell prompt. QEMU cannot boot it on kvm_pvm hosts
//                (docs/kvm-pvm-hosts.md), so vmm alone there. Minutes: N Linux boots at once.
//   GUEST=both   both.
//   N (default 4) machines at once; VERBOSE=1 lists where vmm's private memory is (by mapping).
//   BOOT_TIMEOUT seconds a machine may take to get there (default 600).
// Absolute numbers depend on the host and the load; compare the two VMMs measured side by side.
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { breakdown, sample } from '../smaps.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '../..')
const N = Number(process.env.N ?? 4)
const GUEST = process.env.GUEST ?? 'raw'
const TIMEOUT = Number(process.env.BOOT_TIMEOUT ?? 600) * 1000
const main = join(root, 'packages/cli/dist/main.js')
const work = mkdtempSync(join(tmpdir(), 'vmm-bench-density-'))
// Plugins (the boards) resolve from the repository's node_modules.
writeFileSync(join(work, 'package.json'), '{}')
symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'))

const RAW_MIB = 16
/** The raw guest: `R` on the debug console, then cli; hlt forever. Position-independent. */
function rawGuest() {
  const src = join(work, 'raw.S')
  writeFileSync(src, '.intel_syntax noprefix\n.code16\nmov al, 0x52\nout 0xe9, al\ncli\n1: hlt\njmp 1b\n')
  execFileSync('as', ['--32', '-o', join(work, 'raw.o'), src])
  execFileSync('objcopy', ['-O', 'binary', join(work, 'raw.o'), join(work, 'raw.bin')])
  const code = readFileSync(join(work, 'raw.bin'))
  // QEMU's -bios: 64 KiB mapped below 1 MiB, reset vector F000:FFF0 far-jumps to F000:0000.
  const image = Buffer.alloc(0x10000, 0xff)
  code.copy(image, 0)
  Buffer.from([0xea, 0x00, 0x00, 0x00, 0xf0]).copy(image, 0xfff0)
  writeFileSync(join(work, 'firmware.bin'), image)
  writeFileSync(
    join(work, 'raw.yaml'),
    `machine: { memory: ${RAW_MIB}MiB, irqchip: true }
components:
  guest: { type: raw-image, file: raw.bin, address: 0x7c00 }
  console: { type: debugcon, resources: { port: 0xe9 } }
`,
  )
}

/** examples/micro.yaml with its .guest/ pointing at the cached default guest. */
function linuxGuest() {
  const paths = JSON.parse(
    execFileSync(process.execPath, [join(root, 'packages/image/dist/cli.js'), 'path', '--json'], {
      encoding: 'utf8',
    }),
  )
  const guest = join(work, '.guest')
  execFileSync('mkdir', ['-p', guest])
  symlinkSync(paths.vmlinux, join(guest, 'vmlinux'))
  symlinkSync(paths.initramfs, join(guest, 'initramfs.cpio.gz'))
  writeFileSync(join(work, 'micro.yaml'), readFileSync(join(root, 'examples/micro.yaml')))
}

/** Starts one machine; resolves once `ready` matched its output (or rejects on exit/timeout). */
function start(name, argv, ready) {
  const child = spawn(argv[0], argv.slice(1), { cwd: work, stdio: ['pipe', 'pipe', 'pipe'] })
  let text = ''
  const t0 = performance.now()
  const reached = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready in ${TIMEOUT / 1000} s`)), TIMEOUT)
    const on = (d) => {
      text = (text + d.toString('latin1')).slice(-8192)
      if (ready.test(text)) {
        clearTimeout(timer)
        resolve(performance.now() - t0)
      }
    }
    child.stdout.on('data', on)
    child.stderr.on('data', on)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      reject(
        new Error(
          `${name}: exited (${code ?? signal}) before it was ready: ${text.trim().split('\n').slice(-3).join(' | ')}`,
        ),
      )
    })
  })
  reached.catch(() => {})
  return { name, child, reached }
}

async function measure(label, argv, ready, guestMiB) {
  const vms = Array.from({ length: N }, (_, i) => start(`${label} #${i}`, argv, ready))
  try {
    const times = await Promise.all(vms.map((v) => v.reached))
    await new Promise((r) => setTimeout(r, 2000)) // let start-up garbage and timers settle
    const samples = vms.map((v) => sample(v.child.pid, guestMiB))
    return {
      label,
      times,
      samples,
      detail: process.env.VERBOSE ? breakdown(vms[0].child.pid, guestMiB) : undefined,
    }
  } catch (e) {
    return { label, error: e.message }
  } finally {
    for (const v of vms) v.child.kill('SIGKILL')
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const mb = (kib) => `${(kib / 1024).toFixed(1)} MB`.padStart(8)

function report(r, against) {
  if (r.error) {
    console.log(`  ${r.label.padEnd(34)} ${r.error}`)
    return undefined
  }
  const uss = median(r.samples.map((s) => s.uss - s.guest))
  const pss = median(r.samples.map((s) => s.pss - s.guest))
  const ratio = against
    ? `   ${(uss / against.uss).toFixed(2)}x / ${(pss / against.pss).toFixed(2)}x QEMU`
    : ''
  console.log(
    `  ${r.label.padEnd(34)} USS-guest ${mb(uss)}  PSS-guest ${mb(pss)}  (guest RAM touched ${mb(median(r.samples.map((s) => s.guest)))}, RSS ${mb(median(r.samples.map((s) => s.rss)))}, ready in ${(median(r.times) / 1000).toFixed(1)} s)${ratio}`,
  )
  if (r.detail) for (const [what, kib] of r.detail) console.log(`      ${mb(kib)}  ${what}`)
  return { uss, pss }
}

const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown CPU'
console.log(
  `bench:density — ${N} machines at once per row, medians per VM; host: ${cpu}, Node ${process.versions.node}`,
)
if (GUEST === 'raw' || GUEST === 'both') {
  rawGuest()
  const vmm = await measure('vmm run (raw guest)', [process.execPath, main, 'run', 'raw.yaml'], /R/, RAW_MIB)
  let qemuBin = ''
  try {
    qemuBin = execFileSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' }).trim()
  } catch {}
  const qemu = qemuBin
    ? await measure(
        'QEMU microvm (raw guest)',
        [
          ...[qemuBin, '-M', 'microvm,x-option-roms=off,rtc=off,isa-serial=off', '-enable-kvm'],
          ...['-m', `${RAW_MIB}M`, '-nodefaults', '-no-user-config', '-display', 'none'],
          ...['-bios', join(work, 'firmware.bin'), '-debugcon', 'stdio'],
        ],
        /R/,
        RAW_MIB,
      )
    : {
        label: 'QEMU microvm (raw guest)',
        error: 'qemu-system-x86_64 not found (apt-get install qemu-system-x86)',
      }
  console.log(`raw guest, ${RAW_MIB} MiB, printed its byte and halted:`)
  const q = report(qemu)
  report(vmm, q)
}
if (GUEST === 'linux' || GUEST === 'both') {
  linuxGuest()
  const vmm = await measure(
    'vmm run examples/micro.yaml',
    [process.execPath, main, 'run', 'micro.yaml'],
    /\/ # /,
    256,
  )
  console.log('default Linux guest (examples/micro.yaml, 256 MiB), at the shell prompt:')
  report(vmm)
  console.log(
    '  QEMU: not measured on the Linux guest (it stops at the first emulation failure on kvm_pvm hosts)',
  )
}
