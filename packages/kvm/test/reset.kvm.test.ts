// Machine.reset on the real /dev/kvm (QMP system_reset): a real-mode guest overwrites a marker in
// its own image and counts in a word on another page. After a reset the marker is the image's
// again, the counter's page is zero, the vCPU is back at the entry with the state it had after
// load (the whole x86 state, LAPIC and MSRs included), the in-kernel irqchip as after load; the
// guest then runs again from the start.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { guestAddress, Machine } from '@vmm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { hypervisorProvider } from '../src/index.js'
import { kvmUnavailable } from './harness.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const BASE = 0x7c00
const MARKER = 0x20 // offset in the image
const COUNTER = 0x8000 // another page
// cs = ds = 0x07c0, ip = 0:
//   0: mov byte [0x20], 0x99      C6 06 20 00 99
//   5: inc word [0x400]           FF 06 00 04     (ds:0x400 = 0x8000)
//   9: jmp 5                      EB FA
//   0x20: the marker, 0x11
const IMAGE = new Uint8Array(MARKER + 1)
IMAGE.set([0xc6, 0x06, 0x20, 0x00, 0x99, 0xff, 0x06, 0x00, 0x04, 0xeb, 0xfa])
IMAGE[MARKER] = 0x11

async function running(): Promise<Machine> {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-reset-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'guest.bin'), IMAGE)
  const m = await Machine.fromObject(
    {
      machine: { memory: '1MiB', irqchip: true },
      components: { guest: { type: 'raw-image', file: join(dir, 'guest.bin'), address: BASE } },
    },
    { hypervisor: hypervisorProvider.open() },
  )
  cleanups.push(() => m.dispose())
  await m.load()
  await m.start()
  return m
}

const marker = (m: Machine) => m.memory.readU8(guestAddress(BASE + MARKER))
const counter = (m: Machine) => m.memory.readU16(guestAddress(COUNTER))

describe.skipIf(kvmUnavailable)('Machine.reset on KVM', () => {
  it('puts RAM, the vCPU and the irqchip back as after load, paused or running', {
    timeout: 120_000,
  }, async () => {
    const m = await running()
    const x86 = m.vcpus[0]!.x86!
    await expect.poll(() => marker(m) === 0x99 && counter(m) !== 0, { timeout: 60_000 }).toBe(true)
    await m.pause()
    const regs = m.vcpus[0]!.getRegs()
    expect(regs.rip === 5n || regs.rip === 9n).toBe(true) // in the loop

    await m.reset()
    expect(m.state).toBe('paused')
    expect(marker(m)).toBe(0x11)
    expect(counter(m)).toBe(0)
    const after = m.vcpus[0]!.getRegs()
    expect(after.rip).toBe(0n)
    expect(m.vcpus[0]!.getSregs().cs.selector).toBe(BASE >> 4)
    expect(x86.getMpState()).toBe(0) // KVM_MP_STATE_RUNNABLE, as after load
    const loaded = [...IMAGE]
    const now = new Uint8Array(IMAGE.length)
    m.memory.read(guestAddress(BASE), now)
    expect([...now]).toEqual(loaded)

    // Runs again from the entry: the marker is overwritten and the counter counts from zero.
    await m.resume()
    await expect.poll(() => marker(m) === 0x99 && counter(m) !== 0, { timeout: 60_000 }).toBe(true)
    // And a reset while running: the machine runs on.
    await m.reset()
    expect(m.state).toBe('running')
    await expect.poll(() => marker(m), { timeout: 60_000 }).toBe(0x99)
    await m.pause()
    expect(m.state).toBe('paused')
  })
})
