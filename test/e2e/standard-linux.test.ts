// End to end on the standard board (issue 7): `vmm run` of examples/standard.yaml on the real
// /dev/kvm boots the default guest (@vmm/image), the same kernel and initramfs as the micro board,
// which finds its machine through the ACPI tables (RSDP handed over in hvm_start_info), enumerates
// PCI through the host bridge and drives virtio devices on it. Through the serial console the test
// checks, in the guest:
//  - /sys/bus/pci/devices lists the host bridge and the virtio-pci functions (vendor 0x1af4),
//  - the virtio-blk-pci disk reads back the pattern the test wrote into its backing file,
//  - /proc/interrupts has virtio interrupts that fired, all PCI-MSI (MSI-X vectors: the default
//    guest has CONFIG_PCI_MSI; a kernel without it, given by VMM_E2E_KERNEL, gets IO-APIC lines
//    routed by the DSDT's _PRT),
//  - a virtio-net-pci interface (eth0) on a TAP answers a ping from the host side,
//  - the CMOS RTC (PNP0B00) set the clock, and the ACPI power button is an input device,
// then SIGTERM to vmm presses the power button, the guest powers off through ACPI S5 and vmm
// exits with status 0.
//
// The test runs a manifest that includes examples/standard.yaml and only changes the disk's
// backing file and adds the network device. vmm runs inside a network namespace of its own
// (unshare --net) where the TAP is created, so nothing touches the host's network.
//
// On kvm_pvm hosts every guest kernel instruction is emulated (docs/kvm-pvm-hosts.md): the boot
// takes minutes there, hence the long limits.
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { linkDefaultGuest } from '@vmm/image'
import { Kvm } from '@vmm/kvm'
import { describe, expect, it } from 'vitest'
import { consoleOf, defaultGuest, type GuestConsole } from './console.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '../..')
const cli = join(root, 'packages/cli/dist/main.js')
const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[standard-board Linux end-to-end test skipped] ${kvmUnavailable}`)

const BOOT_LIMIT_MS = 15 * 60_000
const COMMAND_LIMIT_MS = 5 * 60_000
const TAP = 'vtap0'
const HOST_IP = '10.0.2.1'
const GUEST_IP = '10.0.2.2'

/** Why vmm cannot get a TAP in a network namespace of its own here, if it cannot. */
function netUnavailable(): string | undefined {
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing'
  const probe = spawnSync('unshare', ['--net', 'ip', 'link', 'show', 'lo'], { stdio: 'pipe' })
  if (probe.status !== 0)
    return `cannot create a network namespace (unshare --net): ${probe.stderr.toString().trim() || probe.error?.message}`
  return undefined
}

/** 1 MiB disk image whose first sector is a pattern derived from a fixed seed. */
function diskImage(): Uint8Array {
  const disk = new Uint8Array(1 << 20)
  for (let i = 0; i < 512; i += 32)
    disk.set(createHash('sha256').update(`vmm standard-board e2e ${i}`).digest(), i)
  return disk
}

/** Types `command` and waits for its output, ended by a marker the shell computes (never the echo). */
async function shell(con: GuestConsole, stdin: NodeJS.WritableStream, command: string, n: number) {
  const mark = con.text().length
  stdin.write(`${command}; echo "==done $((${n} * 1000))=="\n`)
  const out = await con.waitFor(new RegExp(`==done ${n * 1000}==`), mark, COMMAND_LIMIT_MS)
  return out.slice(0, out.indexOf(`==done ${n * 1000}==`))
}

describe.skipIf(kvmUnavailable)('examples/standard.yaml on /dev/kvm, with the default guest', () => {
  it('enumerates the virtio-pci devices through ACPI and the host bridge, reads the virtio-blk-pci disk, pings over virtio-net-pci, has the RTC, and powers off on the ACPI power button with exit status 0', {
    timeout: 45 * 60_000,
  }, async () => {
    const guest = await defaultGuest()
    // Where the example names them (pnpm start links them the same way).
    linkDefaultGuest(guest, join(root, 'examples/.guest'))
    // VMM_E2E_KERNEL runs another vmlinux with the default initramfs, e.g. one built with
    // CONFIG_PCI_MSI to check MSI-X; its kconfig must lie beside it (.config or config).
    const otherKernel = process.env.VMM_E2E_KERNEL
    const kconfig = otherKernel
      ? [join(dirname(otherKernel), '.config'), join(dirname(otherKernel), 'config')].find((f) =>
          existsSync(f),
        )
      : guest.config
    if (!kconfig) throw new Error(`VMM_E2E_KERNEL: no .config or config beside ${otherKernel}`)
    const msiKernel = /^CONFIG_PCI_MSI=y$/m.test(readFileSync(kconfig, 'utf8'))
    if (otherKernel) console.log(`[e2e standard] kernel ${otherKernel} (CONFIG_PCI_MSI: ${msiKernel})`)

    const dir = mkdtempSync(join(tmpdir(), 'vmm-standard-e2e-'))
    const disk = diskImage()
    writeFileSync(join(dir, 'disk.img'), disk)
    const sector0 = createHash('sha256').update(disk.subarray(0, 512)).digest('hex')

    const noNet = netUnavailable()
    if (noNet) console.warn(`[standard-board e2e] the virtio-net-pci checks are skipped: ${noNet}`)
    const manifest = join(dir, 'standard-e2e.yaml')
    writeFileSync(
      manifest,
      [
        `include: ${JSON.stringify(join(root, 'examples/standard.yaml'))}`,
        'components:',
        ...(otherKernel
          ? [
              `  kernel: { kernel: ${JSON.stringify(otherKernel)}, initrd: ${JSON.stringify(guest.initramfs)} }`,
            ]
          : []),
        `  disk: { path: ${JSON.stringify(join(dir, 'disk.img'))} }`,
        ...(noNet ? [] : [`  net: { type: virtio-net-pci, bus: pci, tap: ${TAP} }`]),
        '',
      ].join('\n'),
    )
    // The TAP's host side, in vmm's own network namespace; vmm attaches to it by name.
    const netSetup = [
      'ip link set lo up',
      `ip tuntap add dev ${TAP} mode tap`,
      `ip addr add ${HOST_IP}/24 dev ${TAP}`,
      `ip link set ${TAP} up`,
      'exec "$@"',
    ].join(' && ')
    const vmm = [process.execPath, cli, 'run', manifest]
    const started = Date.now()
    const child = noNet
      ? spawn(vmm[0]!, vmm.slice(1), { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] })
      : spawn('unshare', ['--net', 'sh', '-c', netSetup, 'sh', ...vmm], {
          cwd: root,
          stdio: ['pipe', 'pipe', 'pipe'],
        })
    const con = consoleOf(child)
    try {
      await con.waitFor(/vmm-guest: init reached/, 0, BOOT_LIMIT_MS)
      const bootMs = /guest reached init after ([\d.]+) ms/.exec(con.text())?.[1]
      console.log(
        `[e2e standard] /init after ${bootMs ?? '?'} ms of vmm run (${((Date.now() - started) / 1000).toFixed(1)} s wall)`,
      )
      // ash's prompt, possibly followed by its cursor-position query (ESC [ 6 n; the . is the ESC),
      // which needs no answer.
      await con.waitFor(/# (.\[6n)?$/, con.text().indexOf('vmm-guest: init reached'), COMMAND_LIMIT_MS)
      const stdin = child.stdin

      // PCI enumeration: lspci's view, from sysfs (busybox has no lspci).
      const pci = await shell(
        con,
        stdin,
        'for d in /sys/bus/pci/devices/*; do echo "pci $(basename $d) $(cat $d/vendor) $(cat $d/device) $(cat $d/class)"; done',
        1,
      )
      const functions = [
        ...pci.matchAll(/^pci (\S+) (0x[0-9a-f]{4}) (0x[0-9a-f]{4}) (0x[0-9a-f]{6})\r?$/gm),
      ].map((m) => ({ address: m[1]!, vendor: m[2]!, device: m[3]!, class: m[4]! }))
      console.log(`[e2e standard] PCI functions in the guest:\n${pci.trim()}`)
      expect(functions).toContainEqual({
        address: '0000:00:00.0',
        vendor: '0x1b36',
        device: '0x0008',
        class: '0x060000',
      })
      const virtio = functions.filter((f) => f.vendor === '0x1af4')
      expect(virtio).toContainEqual(expect.objectContaining({ device: '0x1042', class: '0x010000' })) // blk
      expect(virtio).toContainEqual(expect.objectContaining({ device: '0x1044' })) // rng
      if (!noNet)
        expect(virtio).toContainEqual(expect.objectContaining({ device: '0x1041', class: '0x020000' }))

      // The disk: vda is the virtio-blk-pci function, and its first sector is the test's pattern.
      const blk = virtio.find((f) => f.device === '0x1042')!
      const vda = await shell(
        con,
        stdin,
        'readlink -f /sys/block/vda/device; dd if=/dev/vda bs=512 count=1 2>/dev/null | sha256sum',
        2,
      )
      expect(vda).toContain(`/${blk.address}/virtio`)
      expect(vda).toMatch(new RegExp(`^${sector0}\\s+-`, 'm'))

      // Networking: eth0 is the virtio-net-pci function; the host side of the TAP answers a ping.
      if (!noNet) {
        const net = virtio.find((f) => f.device === '0x1041')!
        const eth0 = await shell(
          con,
          stdin,
          `readlink -f /sys/class/net/eth0/device; ip link set eth0 up && ip addr add ${GUEST_IP}/24 dev eth0 && ping -c 1 -W 10 ${HOST_IP}`,
          3,
        )
        console.log(`[e2e standard] eth0:\n${eth0.trim()}`)
        expect(eth0).toContain(`/${net.address}/virtio`)
        expect(eth0).toMatch(/1 packets transmitted, 1 packets received/)
      }

      // Interrupts: the virtio devices' lines have fired. With CONFIG_PCI_MSI the virtio-pci driver
      // takes MSI-X vectors (config + one per queue; the default guest); without it INTx through
      // the IOAPIC, as the DSDT's _PRT routes it.
      const interrupts = await shell(con, stdin, 'cat /proc/interrupts', 4)
      console.log(`[e2e standard] /proc/interrupts:\n${interrupts.trim()}`)
      const virtioLines = interrupts
        .split(/\r?\n/)
        .filter((l) => /virtio\d/.test(l))
        .map((l) => ({ line: l, count: Number(/^\s*\d+:\s+(\d+)/.exec(l)?.[1] ?? 0) }))
      expect(virtioLines.length).toBeGreaterThan(0)
      expect(virtioLines.some((l) => l.count > 0)).toBe(true)
      if (msiKernel) {
        expect(virtioLines.every((l) => /PCI-MSI/.test(l.line))).toBe(true)
      } else {
        console.warn(
          '[e2e standard] this guest kernel has no CONFIG_PCI_MSI: virtio-pci uses INTx, MSI-X is not exercised by Linux here',
        )
        expect(virtioLines.every((l) => /IO-APIC/.test(l.line))).toBe(true)
      }

      // The legacy devices ACPI describes: the RTC (PNP0B00) that rtc-cmos set the clock from, and
      // the power button (PNP0C0C) whose input device busybox acpid (from the default guest's
      // inittab) watches.
      const legacy = await shell(
        con,
        stdin,
        'echo "rtc $(tr \' \' _ </sys/class/rtc/rtc0/name) $(date +%s)"; cat /sys/bus/pnp/devices/*/id; grep -h "^N:" /proc/bus/input/devices; echo "acpid $(pidof acpid)"',
        5,
      )
      console.log(`[e2e standard] RTC, PNP ids, input devices, acpid:\n${legacy.trim()}`)
      const [, rtcName, guestNow] = /^rtc (\S+) (\d+)\r?$/m.exec(legacy) ?? []
      expect(rtcName).toMatch(/^rtc_cmos/)
      expect(Math.abs(Number(guestNow) - Date.now() / 1000)).toBeLessThan(600)
      expect(legacy).toMatch(/^PNP0b00\r?$/m)
      expect(legacy).toMatch(/Name="Power Button"/)
      expect(legacy).toMatch(/^acpid \d+\r?$/m)

      // A clean shutdown from the host: SIGTERM makes vmm press the ACPI power button (GED ->
      // _EVT -> Notify(PWRB)); acpid runs the guest's power-off action, and S5 ends the run.
      child.kill('SIGTERM')
      const exit = await con.exitWithin(COMMAND_LIMIT_MS)
      expect(con.text()).toMatch(/asked the guest to shut down \(through acpi\)/)
      expect(con.text()).toContain('reboot: Power down')
      // Had the ACPI S5 write not ended the run, init would exit and the kernel would panic (and
      // reboot=acpi would then end the run with 0 through the reset register).
      expect(con.text()).not.toContain('Kernel panic')
      expect(exit, con.text().slice(-3000)).toEqual({ code: 0, signal: null })
      console.log(
        `[e2e standard] powered off, vmm exit status 0 after ${((Date.now() - started) / 1000).toFixed(1)} s wall`,
      )
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
