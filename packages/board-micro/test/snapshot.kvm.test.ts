// Machine.snapshot and Machine.restore with the micro board's legacy devices, on the real /dev/kvm.
// A real-mode guest leaves a mark in the UART's scratch register and in CMOS RAM, then counts,
// printing one letter per count on the serial console (a port write each time), and at the end
// checks both marks and prints the line a Linux guest ends with ("reboot: Power down"), which ends
// the run as a power-off. It is paused mid-count, snapshotted, disposed and restored: the console
// file must then hold every letter exactly once, in order (nothing lost, nothing repeated across
// the restore), and the run must end as the uninterrupted one would.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {
  ComponentRegistry,
  type GuestAddress,
  Machine,
  type PluginRegistry,
  registerBuiltins,
} from '@vmm/core'
import { Kvm, KvmHypervisor } from '@vmm/kvm'
import { assemble } from '@vmm/kvm/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { register } from '../src/index.js'

const kvmUnavailable = Kvm.unavailableReason()
const COUNTER = 0x600
const LIMIT = 60_000

const GUEST = `.code16
  xor ax, ax
  mov ds, ax
  mov dx, 0x3ff
  mov al, 0x5a
  out dx, al
  mov al, 0x30
  out 0x70, al
  mov al, 0x42
  out 0x71, al
1:
  mov eax, [${COUNTER}]
  inc eax
  mov [${COUNTER}], eax
  xor edx, edx
  mov ecx, 26
  div ecx
  mov al, dl
  add al, 0x61
  mov dx, 0x3f8
  out dx, al
  cmp dword ptr [${COUNTER}], ${LIMIT}
  jb 1b
  mov si, offset bad
  mov dx, 0x3ff
  in al, dx
  cmp al, 0x5a
  jne 2f
  mov al, 0x30
  out 0x70, al
  in al, 0x71
  cmp al, 0x42
  jne 2f
  mov si, offset good
2:
  mov dx, 0x3f8
3:
  lodsb
  test al, al
  jz 4f
  out dx, al
  jmp 3b
4:
  hlt
  jmp 4b
good: .asciz "\\nreboot: Power down\\n"
bad: .asciz "\\n---[ end Kernel panic - not syncing: device state lost\\n"
`

const expected = () => {
  let s = ''
  for (let i = 1; i <= LIMIT; i++) s += String.fromCharCode(0x61 + (i % 26))
  return `${s}\nreboot: Power down\n`
}

const disposers: (() => unknown)[] = []
afterEach(async () => {
  for (const d of disposers.splice(0).reverse()) await d()
})

function registry() {
  const r = registerBuiltins(new ComponentRegistry())
  register(r as unknown as PluginRegistry)
  return r
}

function setup() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-snap-micro-'))
  disposers.push(() => fs.rmSync(root, { recursive: true, force: true }))
  fs.writeFileSync(path.join(root, 'guest.bin'), assemble(GUEST))
  const consoleFile = path.join(root, 'console.txt')
  const manifest = {
    machine: { memory: '1MiB', irqchip: true },
    components: {
      guest: {
        type: 'raw-image',
        file: path.join(root, 'guest.bin'),
        address: 0x1000,
        entry: { cs: 0, ip: 0x1000 },
      },
      serial: { type: 'serial', console: 'file', path: consoleFile, resources: { port: 0x3f8, irq: 4 } },
      i8042: { type: 'i8042', resources: { ports: 0x60, irq: 1 } },
      rtc: { type: 'cmos-rtc', resources: { ports: 0x70, irq: 8 } },
      timer: { type: 'boot-timer', log: false, resources: { page: 0xc0000000 } },
    },
  }
  const hypervisor = new KvmHypervisor(Kvm.open())
  disposers.push(() => hypervisor.dispose())
  return { root, consoleFile, manifest, hypervisor }
}

const counter = (m: Machine) => {
  const b = new Uint8Array(4)
  m.memory.read(COUNTER as GuestAddress, b)
  return new DataView(b.buffer).getUint32(0, true)
}

/** Polls guest RAM until the counter reaches `n`. */
async function until(m: Machine, n: number): Promise<void> {
  while (counter(m) < n) await new Promise((r) => setTimeout(r, 2))
}

describe.skipIf(kvmUnavailable)('snapshot and restore on the micro board (real /dev/kvm)', () => {
  it('the uninterrupted run, for comparison: every letter once, then a power-off', async () => {
    const { consoleFile, manifest, hypervisor } = setup()
    const m = await Machine.fromObject(manifest, { hypervisor, registry: registry() })
    disposers.push(() => m.dispose())
    expect(await m.run()).toMatchObject({ status: 'guest-poweroff', code: 0 })
    expect(fs.readFileSync(consoleFile, 'latin1')).toBe(expected())
  })

  it('paused mid-count, snapshotted, disposed, restored: the count goes on and the run ends as it would have', async () => {
    const { root, consoleFile, manifest, hypervisor } = setup()
    const a = await Machine.fromObject(manifest, { hypervisor, registry: registry() })
    disposers.push(() => a.dispose())
    await a.load()
    await a.start()
    await until(a, 2000)
    await a.pause()
    const before = counter(a)
    expect(before).toBeLessThan(LIMIT) // paused mid-count
    const dir = path.join(root, 'snap')
    const t0 = performance.now()
    await a.snapshot(dir)
    const snapshotMs = performance.now() - t0
    await a.dispose()
    const written = fs.readFileSync(consoleFile, 'latin1')
    expect(written).toBe(expected().slice(0, before))
    const header = JSON.parse(fs.readFileSync(path.join(dir, 'snapshot.json'), 'utf8'))
    const state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8'))
    expect(Object.keys(state.components).sort()).toEqual(['guest', 'i8042', 'rtc', 'serial', 'timer'])
    expect(state.components.serial.uart.scr).toBe(0x5a)

    const t1 = performance.now()
    const b = await Machine.restore(dir, { hypervisor, registry: registry() })
    const restoreMs = performance.now() - t1
    disposers.push(() => b.dispose())
    expect(b.state).toBe('paused')
    expect(counter(b)).toBe(before)
    expect(fs.readFileSync(consoleFile, 'latin1')).toBe(written) // nothing ran yet
    await b.resume()
    expect(await b.done).toMatchObject({ status: 'guest-poweroff', code: 0 })
    expect(fs.readFileSync(consoleFile, 'latin1')).toBe(expected())
    console.log(
      `[snapshot] ${header.state.bytes} B state, ${header.memory.bytes} B memory file ` +
        `(${fs.statSync(path.join(dir, 'memory')).blocks * 512} B on disk); ` +
        `snapshot ${snapshotMs.toFixed(1)} ms, restore ${restoreMs.toFixed(1)} ms`,
    )
  })

  it('refuses a device state that is not one, naming the component and field, before any vCPU runs', async () => {
    const { root, consoleFile, manifest, hypervisor } = setup()
    const a = await Machine.fromObject(manifest, { hypervisor, registry: registry() })
    disposers.push(() => a.dispose())
    await a.load()
    await a.start()
    await until(a, 100)
    await a.pause()
    const dir = path.join(root, 'snap')
    await a.snapshot(dir)
    await a.dispose()
    // A consistent but wrong snapshot: the checksum is made to match, so only the device check can refuse it.
    const stateFile = path.join(dir, 'state.json')
    const text = fs.readFileSync(stateFile, 'utf8').replace('"scr":90', '"scr":900')
    fs.writeFileSync(stateFile, text)
    const headerFile = path.join(dir, 'snapshot.json')
    const header = JSON.parse(fs.readFileSync(headerFile, 'utf8'))
    const { createHash } = await import('node:crypto')
    header.state.bytes = Buffer.byteLength(text)
    header.state.sha256 = createHash('sha256').update(text).digest('hex')
    fs.writeFileSync(headerFile, JSON.stringify(header))
    const output = fs.readFileSync(consoleFile)
    await expect(Machine.restore(dir, { hypervisor, registry: registry() })).rejects.toThrow(
      /serial: uart: saved state scr: must be an integer in 0\.\.255, got 900/,
    )
    expect(fs.readFileSync(consoleFile).equals(output)).toBe(true)
  })
})
