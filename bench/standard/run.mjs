// pnpm bench:standard — boot time to /init on vmm's standard board (examples/standard.yaml: PCI
// host bridge, ACPI, virtio-blk-pci, virtio-rng-pci) against `qemu-system-x86_64 -M q35` with the
// same kernel, initramfs, command line, memory, vCPU count, disk image and virtio-pci devices,
// alternating, in one run; prints medians and their ratio.
//
// Both sides are timed from spawning the VMM to the line the default guest's /init prints on the
// serial console ("vmm-guest: init reached"), so firmware (SeaBIOS on q35) counts for QEMU as
// start-up code counts for vmm. A side that does not get there is reported with why: on kvm_pvm
// hosts QEMU stops at the first instruction KVM's emulator cannot complete (a "KVM internal
// error", emulation failure, usually the kernel's int3 self-test), which vmm completes itself
// (docs/kvm-pvm-hosts.md). No ratio is printed unless both sides reached /init.
//
// Needs the default guest (pnpm start builds it). Environment: BOOT_TIMEOUT seconds per boot
// (default 600: a boot takes minutes on kvm_pvm hosts), ROUNDS (default 1), QEMU
// (default qemu-system-x86_64).
import { execFileSync, spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { findDefaultGuest, linkDefaultGuest } from '@vmm/image'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const TIMEOUT = Number(process.env.BOOT_TIMEOUT ?? 600) * 1000
const ROUNDS = Number(process.env.ROUNDS ?? 1)
const QEMU = process.env.QEMU ?? 'qemu-system-x86_64'
const INIT = /vmm-guest: init reached/
const EXAMPLE = join(root, 'examples/standard.yaml')

const guest = await findDefaultGuest()
if (!guest) {
  console.error('bench:standard needs the default guest: run `pnpm start` once (it builds and caches it)')
  process.exit(1)
}
linkDefaultGuest(guest, join(root, 'examples/.guest'))

// What the example machine has, read from its effective form so both sides get the same.
const effective = execFileSync(
  process.execPath,
  [join(root, 'packages/cli/dist/main.js'), 'validate', EXAMPLE, '--print'],
  {
    cwd: root,
  },
).toString()
const field = (re, what) => {
  const m = re.exec(effective)
  if (!m) throw new Error(`cannot find ${what} in the effective examples/standard.yaml`)
  return m[1]
}
const cmdline = field(/^\s+cmdline: (.+)$/m, 'the kernel command line').replace(/^["']|["']$/g, '')
const memoryBytes = Number(field(/^\s+memory: (\S+)$/m, 'the memory size'))
const vcpus = Number(field(/^\s+vcpus: (\d+)$/m, 'the vCPU count'))
const disk = field(/^\s+path: (\S+)$/m, 'the disk image') // absolute in the effective form

// The example itself: its serial console is stdio, which the bench reads.
const vmmArgs = [join(root, 'packages/cli/dist/main.js'), 'run', EXAMPLE]
const qemuArgs = [
  ...['-M', 'q35', '-enable-kvm', '-m', `${memoryBytes / 2 ** 20}M`, '-smp', String(vcpus)],
  ...['-nodefaults', '-nographic', '-serial', 'stdio', '-no-reboot'],
  ...['-kernel', guest.vmlinux, '-initrd', guest.initramfs, '-append', cmdline],
  ...[
    '-drive',
    `file=${disk},if=none,id=disk,format=raw,readonly=on`,
    '-device',
    'virtio-blk-pci,drive=disk',
    '-device',
    'pci-testdev',
  ],
  ...['-device', 'virtio-rng-pci'],
]

/** One boot: ms from spawn to /init, or why not. */
function boot(name, cmd, args) {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const child = spawn(cmd, args, { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] })
    let text = ''
    let result
    const finish = (r) => {
      if (result) return
      result = { name, ...r }
      clearTimeout(timer)
      child.kill('SIGKILL')
    }
    const onData = (d) => {
      text += d.toString('latin1')
      if (INIT.test(text)) finish({ ms: performance.now() - t0 })
      else if (/KVM internal error/.test(text) && /^Code=[^\n]*\n/m.test(text)) {
        // QEMU prints the registers and a line of code bytes, the failing one in <>, then pauses the VM.
        const code = /^Code=.*<([0-9a-f]{2})>.*$/m.exec(text)?.[1]
        const what = /emulation failure/.test(text) ? 'emulation failure' : 'internal error'
        finish({
          failed: `stopped after ${((performance.now() - t0) / 1000).toFixed(1)} s: KVM ${what}${code ? ` at an instruction starting ${code}${code === 'cc' ? ' (int3)' : ''}` : ''}; the VM is paused there and never reaches /init`,
        })
      }
      if (text.length > 1 << 20) text = text.slice(-65536)
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    const timer = setTimeout(() => finish({ failed: `no /init within ${TIMEOUT / 1000} s` }), TIMEOUT)
    child.on('error', (e) => finish({ failed: `cannot start ${cmd}: ${e.message}` }))
    child.on('exit', (code, signal) => {
      finish({
        failed: `exited (${signal ?? `status ${code}`}) before /init; last output: ${text.trim().split('\n').slice(-3).join(' | ')}`,
      })
      resolve(result)
    })
  })
}

let qemuMissing
try {
  execFileSync(QEMU, ['--version'], { stdio: 'pipe' })
} catch {
  qemuMissing = `${QEMU} is not installed (apt-get install qemu-system-x86)`
}

const results = { vmm: [], qemu: [] }
for (let r = 0; r < ROUNDS; r++) {
  results.vmm.push(await boot('vmm', process.execPath, vmmArgs))
  if (!qemuMissing) results.qemu.push(await boot('qemu', QEMU, qemuArgs))
}

const median = (xs) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : undefined)
const summary = (rs) => {
  const ok = rs.filter((r) => r.ms !== undefined).map((r) => r.ms)
  const failures = [...new Set(rs.filter((r) => r.failed).map((r) => r.failed))]
  return { ms: median(ok), ok: ok.length, failures }
}
const vmm = summary(results.vmm)
const qemu = summary(results.qemu)
const fmt = (s, n) =>
  s.ms === undefined ? 'did not reach /init' : `${(s.ms / 1000).toFixed(2)} s (median of ${s.ok}/${n})`
console.log(
  `bench:standard — time to /init, ${guest.vmlinux} + ${guest.initramfs}, ${memoryBytes / 2 ** 20} MiB, ${vcpus} vCPU, ${ROUNDS} round(s)`,
)
console.log(`command line: ${cmdline}`)
console.log(`vmm  examples/standard.yaml          ${fmt(vmm, results.vmm.length)}`)
for (const f of vmm.failures) console.log(`     ${f}`)
if (qemuMissing) console.log(`qemu -M q35                         not run: ${qemuMissing}`)
else {
  console.log(`qemu -M q35 (same kernel and devices) ${fmt(qemu, results.qemu.length)}`)
  for (const f of qemu.failures) console.log(`     ${f}`)
}
if (vmm.ms !== undefined && qemu.ms !== undefined)
  console.log(`ratio vmm / qemu: ${(vmm.ms / qemu.ms).toFixed(2)}x`)
else console.log('ratio vmm / qemu: none (both sides must reach /init)')
