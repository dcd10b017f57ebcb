// Shared by test/e2e/micro-devices.test.ts and bench/virtio/run.mjs (plain JavaScript so that the
// benchmark runs under node without a TypeScript step): the micro-board manifest with every
// virtio-mmio device, a private network namespace with a TAP in it, the small freestanding guest
// tools (guest-tools/*.c) built with gcc and packed into a second initramfs archive that follows
// the default one, and a driver for the guest's busybox shell over its serial console.
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipCpio, writeCpio } from '@vmm/image'

const here = dirname(fileURLToPath(import.meta.url))
export const root = join(here, '../..')
export const vmmCli = join(root, 'packages/cli/dist/main.js')

/** examples/micro.yaml's command line; the virtio-mmio devices append their virtio_mmio.device=. */
export const MICRO_CMDLINE =
  'console=ttyS0 loglevel=4 reboot=k panic=1 acpi=off pci=off nomodule i8042.noaux i8042.nomux i8042.nopnp ' +
  'i8042.dumbkbd swiotlb=noforce cryptomgr.notests noxsave clearcpuid=cx16,popcnt'

/** The guest side and the host side of the TAP (a /24 inside the private namespace). */
export const GUEST_IP = '10.0.2.15'
export const HOST_IP = '10.0.2.1'

// --- guest tools ---

/** Builds guest-tools/<name>.c into `dir` (freestanding, static, no libc); returns name -> path. */
export function buildGuestTools(dir, names) {
  const out = {}
  for (const name of names) {
    const path = join(dir, name)
    execFileSync(
      'gcc',
      [
        ...['-static', '-nostdlib', '-ffreestanding', '-fno-stack-protector', '-fno-builtin'],
        ...['-fno-pie', '-no-pie', '-O2', '-Wall', '-o', path, join(here, 'guest-tools', `${name}.c`)],
      ],
      { stdio: 'pipe' },
    )
    out[name] = path
  }
  return out
}

/**
 * Writes to `out` the default initramfs followed by a gzip cpio archive holding `files`
 * ({ path in the guest: host file }, mode 0755). Linux unpacks concatenated archives in order.
 */
export function writeExtendedInitrd(baseInitramfs, files, out) {
  const extra = gzipCpio(
    writeCpio(
      Object.entries(files).map(([path, host]) => ({
        type: 'file',
        path,
        data: readFileSync(host),
        mode: 0o755,
      })),
    ),
  )
  writeFileSync(out, Buffer.concat([readFileSync(baseInitramfs), extra]))
  return out
}

// --- network namespace ---

/** Why a private network namespace with a TAP cannot be had here, or undefined when it can. */
export function netnsUnavailable() {
  const probe = spawnSync('unshare', ['--net', 'ip', 'tuntap', 'add', 'dev', 'probe0', 'mode', 'tap'], {
    stdio: 'pipe',
  })
  if (probe.error) return `unshare is unavailable (${probe.error.message})`
  if (probe.status !== 0) {
    const why = probe.stderr.toString().trim()
    const ns = spawnSync('unshare', ['--net', 'true'], { stdio: 'pipe' })
    return ns.status !== 0
      ? `cannot create a network namespace (unshare --net): ${ns.stderr.toString().trim()}`
      : `cannot create a TAP device in a network namespace (ip tuntap add): ${why}`
  }
  const named = spawnSync('ip', ['netns', 'list'], { stdio: 'pipe' })
  if (named.status !== 0) return `ip netns is unavailable: ${named.stderr.toString().trim()}`
  return undefined
}

/**
 * A named network namespace (ip netns) holding a persistent TAP whose host side is HOST_IP/24, so
 * that vmm and QEMU, run one after the other, find the same TAP. dispose() removes both.
 */
export function createNetns(prefix = 'vmm-e2e') {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`
  const tap = `vmt${randomBytes(2).toString('hex')}`
  execFileSync('ip', ['netns', 'add', name], { stdio: 'pipe' })
  const exec = (cmd, args) =>
    execFileSync('ip', ['netns', 'exec', name, cmd, ...args], { stdio: 'pipe' }).toString()
  try {
    exec('ip', ['link', 'set', 'lo', 'up'])
    exec('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap', 'vnet_hdr'])
    exec('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', tap])
    exec('ip', ['link', 'set', tap, 'up'])
  } catch (e) {
    spawnSync('ip', ['netns', 'del', name])
    throw e
  }
  return {
    name,
    tap,
    exec,
    /** argv prefix that runs a command inside the namespace (network only). */
    wrap: (argv) => ['nsenter', `--net=/run/netns/${name}`, ...argv],
    dispose: () => spawnSync('ip', ['netns', 'del', name], { stdio: 'pipe' }),
  }
}

// --- the machine ---

/**
 * The micro board with 1 vCPU (2 hang at SMP bring-up on kvm_pvm hosts), the serial console on
 * stdio, and the virtio-mmio devices `devices` names ({ blk, net, rng, vsock, console }).
 */
export function microManifest({ kernel, initrd, cmdline = MICRO_CMDLINE, memory = '256MiB', devices }) {
  const lines = [
    'plugins: ["@vmm/board-micro", "@vmm/virtio"]',
    ...machineLines(memory),
    ...kernelLines(kernel, initrd, cmdline),
    '  i8042:',
    '    type: i8042',
    '    resources: { ports: 0x60, irq: 1 }',
    ...timerLines,
  ]
  // Fixed windows and lines (8 is the CMOS RTC's, which the guest kernel has a driver for).
  const irqs = [5, 6, 7, 10, 11]
  let slot = 0
  virtioDevices(devices, (id, type, fields) => {
    lines.push(`  ${id}:`, `    type: ${type}`)
    for (const [k, v] of Object.entries(fields)) lines.push(`    ${k}: ${JSON.stringify(v)}`)
    const regs = (0xc0001000 + slot * 0x1000).toString(16)
    lines.push(`    resources: { regs: 0x${regs}, irq: ${irqs[slot]} }`)
    slot++
  })
  return `${lines.join('\n')}\n`
}

/** examples/standard.yaml's command line: the micro board's without acpi=off and pci=off. */
export const STANDARD_CMDLINE =
  'console=ttyS0 loglevel=4 reboot=acpi panic=1 nomodule i8042.noaux i8042.nomux i8042.nopnp ' +
  'i8042.dumbkbd swiotlb=noforce cryptomgr.notests noxsave clearcpuid=cx16,popcnt'

/**
 * The standard board as examples/standard.yaml has it (PCI host bridge, ACPI with power button and
 * PCI hot-plug, CMOS RTC, VM Generation ID), 1 vCPU, the serial console on stdio, and `devices` as virtio-pci
 * functions on the bridge (MSI-X), in the first free slots in this order: blk, net, rng, vsock, console.
 */
export function standardManifest({ kernel, initrd, cmdline = STANDARD_CMDLINE, memory = '256MiB', devices }) {
  const lines = [
    'plugins: ["@vmm/board-micro", "@vmm/board-standard"]',
    ...machineLines(memory, '  memoryModel: stacked'),
    ...kernelLines(kernel, initrd, cmdline),
    ...timerLines,
    '  rtc:',
    '    type: cmos-rtc',
    '    resources: { ports: 0x70, irq: 8 }',
    '  pci:',
    '    type: pci-host-bridge',
    '    mmio32: 256MiB',
    '    resources: { config: 0xcf8, ecam: 0xe0000000, mmio32: 0xc1000000, inta: 16, intb: 17, intc: 18, intd: 19 }',
    '  acpi:',
    '    type: acpi',
    '    pci: pci',
    '    serial: [serial]',
    '    kernel: kernel',
    '    rtc: rtc',
    '    i8042: false',
    '    resources: { pm: 0x600, sci: 9 }',
    '  vmgenid:',
    '    type: vmgenid',
    '    acpi: acpi',
  ]
  virtioDevices(devices, (id, type, fields) => {
    lines.push(`  ${id}:`, `    type: ${type}-pci`, '    bus: pci')
    for (const [k, v] of Object.entries(fields)) lines.push(`    ${k}: ${JSON.stringify(v)}`)
  })
  return `${lines.join('\n')}\n`
}

function machineLines(memory, ...extra) {
  return [
    'machine:',
    `  memory: ${memory}`,
    '  vcpus: 1',
    '  irqchip: true',
    ...extra,
    '  layout: { mmio: { base: 0xc0000000, size: 0x3ec00000 } }',
  ]
}

/** The kernel and the serial console on stdio, as both boards have them. */
function kernelLines(kernel, initrd, cmdline) {
  return [
    'components:',
    '  kernel:',
    '    type: linux',
    `    kernel: ${JSON.stringify(kernel)}`,
    `    initrd: ${JSON.stringify(initrd)}`,
    `    cmdline: ${JSON.stringify(cmdline)}`,
    '  serial:',
    '    type: serial',
    '    console: stdio',
    '    resources: { port: 0x3f8, irq: 4 }',
  ]
}

/** The boot timer (the default guest's init writes to it) at the start of the MMIO gap. */
const timerLines = ['  timer:', '    type: boot-timer', '    resources: { page: 0xc0000000 }']

/** Calls `device(id, type, fields)` for each device `d` names, in a fixed order and with fixed ids. */
function virtioDevices(d, device) {
  if (d.blk) device('blk', 'virtio-blk', { path: d.blk })
  if (d.net) device('net', 'virtio-net', { tap: d.net, mac: '06:00:0a:00:02:0f' })
  if (d.rng) device('rng', 'virtio-rng', {})
  if (d.vsock) device('vsock', 'virtio-vsock', { cid: 3, path: d.vsock })
  if (d.console) device('hvc', 'virtio-console', { backend: 'socket', path: d.console })
}

/**
 * Writes microManifest(options) to `<dir>/micro.yaml` and returns its path. Plugins resolve from
 * the manifest's directory: it gets a package.json and a link to the repository's node_modules.
 */
export function writeMicroManifest(dir, options) {
  return writeManifest(dir, 'micro.yaml', microManifest(options))
}

/** writeMicroManifest for the standard board: standardManifest(options) in `<dir>/standard.yaml`. */
export function writeStandardManifest(dir, options) {
  return writeManifest(dir, 'standard.yaml', standardManifest(options))
}

function writeManifest(dir, name, text) {
  writeFileSync(join(dir, 'package.json'), '{}')
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'))
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

// --- the guest's shell ---

/**
 * The guest's console (vmm's stdout and stderr together) of a `vmm run` child process, and ways
 * to wait for text in it and for the process to end. The one implementation for the end-to-end
 * tests (console.ts types it) and the benchmarks.
 */
export function watchConsole(child) {
  let text = ''
  const waiters = []
  const wake = () => {
    for (const w of waiters.splice(0)) w()
  }
  const onData = (chunk) => {
    text += chunk.toString('latin1')
    wake()
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  let done = false
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  void exited.then(() => {
    done = true
    wake()
  })
  return {
    text: () => text,
    exited,
    /** How vmm exited; rejects, with the console's end, when it still runs after `timeoutMs`. */
    exitWithin(timeoutMs) {
      let timer
      const late = new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`vmm still running ${timeoutMs / 1000} s later:\n${text.slice(-3000)}`)),
          timeoutMs,
        )
        timer.unref()
      })
      return Promise.race([exited, late]).finally(() => clearTimeout(timer))
    },
    /** Resolves with the text after `from` once it matches; rejects on exit or timeout, with the console's end. */
    async waitFor(pattern, from, timeoutMs) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const seen = text.slice(from)
        if (pattern.test(seen)) return seen
        if (done || Date.now() > deadline)
          throw new Error(
            `${done ? 'vmm exited' : `no ${pattern} within ${timeoutMs / 1000} s`} ` +
              `before ${pattern} appeared; console so far ends with:\n${text.slice(-3000)}`,
          )
        await new Promise((resolve) => {
          waiters.push(resolve)
          setTimeout(resolve, 1000).unref()
        })
      }
    },
  }
}

/**
 * Runs commands in the guest's busybox shell through its serial console. `con` is console.ts's
 * GuestConsole (or anything with text() and waitFor()), `write` types on the console. The first
 * call turns the terminal's echo off (busybox then reads lines without its line editor), so the
 * console shows only prompts and output.
 */
export class GuestShell {
  constructor(con, write) {
    this.con = con
    this.write = write
    this.count = 0
    this.quiet = false
  }

  /**
   * Runs `command`; resolves with { status, output } once the shell reports the exit status.
   * output is what the console showed meanwhile, prompts ("/ # ") removed.
   */
  async run(command, timeoutMs = 5 * 60_000) {
    if (!this.quiet) {
      this.quiet = true
      await this.run('stty -echo', 60_000)
    }
    const id = ++this.count
    const mark = this.con.text().length
    // The status is expanded by the shell, so the marker never matches what was typed.
    this.write(`${command}; echo "@@${id}:$?@@"\n`)
    const marker = new RegExp(`@@${id}:(\\d+)@@`)
    const seen = await this.con.waitFor(marker, mark, timeoutMs)
    const m = marker.exec(seen)
    const output = seen
      .slice(0, m.index)
      .replace(/\r/g, '')
      .replace(/^(\/\S* # )+/gm, '') // the prompt, "<cwd> # "
    return { status: Number(m[1]), output }
  }

  /** run() that throws when the status is not 0. */
  async check(command, timeoutMs) {
    const r = await this.run(command, timeoutMs)
    if (r.status !== 0) throw new Error(`guest command failed (status ${r.status}): ${command}\n${r.output}`)
    return r.output
  }
}

/** Seconds of busybox's `time` report ("real\t0m 3.12s"); Debian's busybox dd prints no rate. */
export function parseRealTime(text) {
  const m = /real\s+(\d+)m ([\d.]+)s/.exec(text)
  return m ? Number(m[1]) * 60 + Number(m[2]) : undefined
}
