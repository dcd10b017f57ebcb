import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { guestAddress } from '../src/address.js'
import type { Debugcon } from '../src/components/debugcon/index.js'
import { Machine, type MachineEvent } from '../src/machine/machine.js'
import { TestHypervisor } from '../src/testing/test-hypervisor.js'
import { fixture, helloGuest } from './fixtures.js'
import { type Bar, type Registers, testRegistry } from './test-types.js'

function manifest(
  guest: Uint8Array,
  extra: Record<string, unknown> = {},
  machine: Record<string, unknown> = {},
) {
  const dir = fixture({ 'guest.bin': guest })
  return {
    machine: { memory: '1MiB', ...machine },
    components: {
      guest: { type: 'raw-image', file: join(dir, 'guest.bin'), address: 0x7c00 },
      console: { type: 'debugcon', output: 'none', resources: { port: 0xe9 } },
      ...extra,
    },
  }
}

async function build(guest: Uint8Array, extra?: Record<string, unknown>, machine?: Record<string, unknown>) {
  const hypervisor = new TestHypervisor()
  const m = await Machine.fromObject(manifest(guest, extra, machine), {
    hypervisor,
    registry: testRegistry(),
  })
  return { m, hypervisor, vm: hypervisor.vms[0]! }
}

// A guest that spins forever: jmp $
const spin = Uint8Array.of(0xeb, 0xfe)

describe('Machine on the test hypervisor', () => {
  it('runs a raw guest to a clean halt, with events and per-component timings', async () => {
    const { m, vm } = await build(helloGuest)
    const events: MachineEvent[] = []
    m.on((e) => events.push(e))
    expect(m.state).toBe('realized')
    const result = await m.run()
    expect(result).toMatchObject({ status: 'guest-halt', code: 0, vcpu: 0, exit: { kind: 'hlt' } })
    expect(m.component<Debugcon>('console').text).toBe('ok')
    expect(events.filter((e) => e.type === 'state').map((e) => (e.type === 'state' ? e.to : ''))).toEqual([
      'loaded',
      'running',
      'stopped',
    ])
    expect(events).toContainEqual({ type: 'exit', vcpu: 0, exit: { kind: 'hlt' } })
    expect(m.timings.map((t) => `${t.id}:${t.phase}`)).toEqual(['guest:build', 'console:build', 'guest:load'])
    expect(m.components.map((c) => [c.id, c.type])).toEqual([
      ['guest', 'raw-image'],
      ['console', 'debugcon'],
    ])
    // RAM reached the hypervisor as one slot; the guest image sits where the manifest put it.
    expect([...vm.slots.values()].map((s) => [s.slot, s.guestAddress, s.size])).toEqual([[0, 0, 0x100000]])
    expect(m.memory.readU8(m.memory.memorySegments[0]!.start + 0x7c00)).toBe(0xb0)
    await m.dispose()
    await m.dispose() // harmless
    expect(m.state).toBe('disposed')
    expect(vm.disposed).toBe(true)
  })

  it('pauses a spinning guest, resumes it, and stops it from outside', async () => {
    const { m, hypervisor } = await build(spin)
    await m.load()
    await m.start()
    await new Promise((r) => setTimeout(r, 20))
    await m.pause()
    expect(m.state).toBe('paused')
    const vcpu = hypervisor.vms[0]!.vcpus[0]!
    const steps = vcpu.steps
    await new Promise((r) => setTimeout(r, 20))
    expect(vcpu.steps).toBe(steps) // really paused
    await m.resume()
    await new Promise((r) => setTimeout(r, 20))
    expect(vcpu.steps).toBeGreaterThan(steps)
    expect(await m.stop()).toMatchObject({ status: 'stopped', code: 0 })
    expect(m.state).toBe('stopped')
    await m.dispose()
  })

  it('fails the run with the instruction bytes when the guest does something unsupported', async () => {
    const { m } = await build(Uint8Array.of(0x90, 0x0f, 0x01, 0xd9)) // nop; vmmcall
    const result = await m.run()
    expect(result.status).toBe('failed')
    expect(result.code).toBe(1)
    expect(result.reason).toMatch(/^vCPU 0: internal error 1 at instruction bytes 0f 01 d9/)
    await m.dispose()
  })

  it('maps devices at their allocated windows, raises their IRQs, and reports unhandled accesses', async () => {
    const guest = Uint8Array.of(
      0xba,
      0x00,
      0x10, // mov dx, 0x1000  (the allocated port window)
      0xb0,
      0x2a, // mov al, 42
      0xee, // out dx, al
      0xec, // in al, dx
      0xe6,
      0xe9, // out 0xe9, al      -> debugcon prints '*'
      0xba,
      0x07,
      0x10, // mov dx, 0x1007
      0xee, // out dx, al        -> test-port pulses its IRQ
      0xe4,
      0x80, // in al, 0x80       -> nothing there: all-ones
      0xf4,
    )
    const { m, vm } = await build(guest, { dev: { type: 'test-port' } }, { irqchip: true })
    const unhandled: MachineEvent[] = []
    m.on((e) => e.type === 'unhandled' && unhandled.push(e))
    await m.load()
    await m.start()
    // With an in-kernel irqchip a halt waits for an interrupt, so the guest runs until stopped.
    await new Promise((r) => setTimeout(r, 20))
    await m.stop()
    expect(m.component<Debugcon>('console').text).toBe('*')
    expect(m.component<Registers>('dev').bytes[0]).toBe(42)
    expect(vm.log.irqEvents).toEqual([
      { irq: 5, level: true },
      { irq: 5, level: false },
    ])
    expect(unhandled).toEqual([
      { type: 'unhandled', access: { bus: 'pio', address: 0x80, size: 1, write: false } },
    ])
    await m.dispose()
  })

  it('dispatches MMIO from the guest to a device on the MMIO bus', async () => {
    const guest = Uint8Array.of(
      0xb8,
      0x00,
      0xd0, // mov ax, 0xd000
      0x8e,
      0xd8, // mov ds, ax        (ds:0 = 0xd0000)
      0xb0,
      0x99, // mov al, 0x99
      0xa2,
      0x04,
      0x00, // mov [4], al
      0xf4,
    )
    const { m } = await build(
      guest,
      { regs: { type: 'test-mmio', resources: { regs: 0xd0000 } } },
      { memory: '512KiB' },
    )
    expect(await m.run()).toMatchObject({ status: 'guest-halt' })
    expect(m.component<Registers>('regs').bytes[4]).toBe(0x99)
    await m.dispose()
  })

  it('with the stacked memory model, applies slot changes when a region moves', async () => {
    const guest = Uint8Array.of(
      0xb8,
      0x00,
      0x80, // mov ax, 0x8000
      0x8e,
      0xd8, // mov ds, ax        (ds:0 = 0x80000, inside RAM, under the BAR)
      0xb0,
      0x5a, // mov al, 0x5a
      0xa2,
      0x10,
      0x00, // mov [0x10], al
      0xf4,
    )
    const { m, vm } = await build(
      guest,
      { bar: { type: 'test-bar', address: 0x80000 } },
      { memoryModel: 'stacked' },
    )
    const slots = () =>
      [...vm.slots.values()]
        .map((s) => [s.guestAddress, s.size, s.mappingOffset])
        .sort((x, y) => x[0]! - y[0]!)
    expect(slots()).toEqual([
      [0, 0x80000, 0],
      [0x81000, 0x7f000, 0x81000],
    ])
    expect(await m.run()).toMatchObject({ status: 'guest-halt' })
    const bar = m.component<Bar>('bar')
    expect(bar.bytes[0x10]).toBe(0x5a)
    expect(m.memory.isMapped(guestAddress(0x80000), 1)).toBe(false)
    bar.region.setAddress(0xe000_0000) // the guest reprograms the BAR
    expect(slots()).toEqual([[0, 0x100000, 0]])
    expect(m.memory.isMapped(guestAddress(0x80000), 1)).toBe(true)
    await m.dispose()
  })

  it('keeps application processors waiting for INIT/SIPI while the bootstrap processor runs', async () => {
    const { m, hypervisor } = await build(helloGuest, {}, { vcpus: 2, irqchip: true })
    await m.load()
    await m.start()
    await new Promise((r) => setTimeout(r, 20))
    expect(m.component<Debugcon>('console').text).toBe('ok')
    expect(hypervisor.vms[0]!.vcpus.map((v) => v.steps > 0)).toEqual([true, false])
    expect(await m.stop()).toMatchObject({ status: 'stopped' })
    await m.dispose()
  })

  it('turns a device that throws into a failed run naming the access', async () => {
    const { m } = await build(
      Uint8Array.of(0xe6, 0x70, 0xf4),
      { bad: { type: 'test-port', resources: { ports: 0x70 } } },
      { irqchip: true },
    )
    const dev = m.component<Registers>('bad')
    dev.write = () => {
      throw new Error('boom')
    }
    expect(await m.run()).toMatchObject({
      status: 'failed',
      code: 1,
      reason: 'port write 0x70: device bad threw: boom',
    })
    await m.dispose()
  })

  it('names what a device threw when it is not an Error (null, a string)', async () => {
    for (const [thrown, text] of [
      [null, 'a non-error value was thrown: null'],
      ['jammed', 'jammed'],
    ] as const) {
      const { m } = await build(
        Uint8Array.of(0xe6, 0x70, 0xf4),
        { bad: { type: 'test-port', resources: { ports: 0x70 } } },
        { irqchip: true },
      )
      m.component<Registers>('bad').write = () => {
        throw thrown
      }
      expect((await m.run()).reason).toBe(`port write 0x70: device bad threw: ${text}`)
      await m.dispose()
    }
  })

  it('a component that fails to start is named in the error', async () => {
    const { m } = await build(helloGuest)
    Object.assign(m.component<object>('console'), {
      start() {
        throw new Error('no socket')
      },
    })
    await m.load()
    await expect(m.start()).rejects.toThrow('console: start failed: no socket')
    await m.dispose()
  })

  it('fails the run when a component cannot stop, still settling done', async () => {
    const { m } = await build(helloGuest)
    Object.assign(m.component<object>('console'), {
      stop() {
        throw new Error('stuck')
      },
    })
    expect(await m.run()).toEqual({
      status: 'failed',
      code: 1,
      reason: 'guest halted; then stopping failed: console: stop failed: stuck',
    })
    expect(m.state).toBe('stopped')
    await m.dispose()
  })

  it('builds components with their references injected, dependencies first', async () => {
    const { m } = await build(helloGuest, { link: { type: 'test-link', parent: 'console' } })
    expect(m.component<{ parent: unknown }>('link').parent).toBe(m.component('console'))
    await m.dispose()
  })

  it('refuses lifecycle steps out of order', async () => {
    const { m } = await build(helloGuest)
    await expect(m.start()).rejects.toThrow('machine is realized; expected loaded')
    await expect(m.pause()).rejects.toThrow('machine is realized; expected running')
    await m.dispose()
    await expect(m.load()).rejects.toThrow('machine is disposed; expected realized')
  })

  it('releases what it built when realize fails', async () => {
    const hypervisor = new TestHypervisor()
    const bad = manifest(helloGuest, { dev: { type: 'test-broken' } })
    await expect(Machine.fromObject(bad, { hypervisor, registry: testRegistry() })).rejects.toThrow(
      'broken on purpose',
    )
    expect(hypervisor.vms[0]!.disposed).toBe(true)
  })

  it('refuses a raw image whose entry is outside it, naming the file (issue 13)', async () => {
    const entry = manifest(spin)
    ;(entry.components.guest as Record<string, unknown>).entry = { cs: 0, ip: 0x100 }
    const m2 = await Machine.fromObject(entry, { hypervisor: new TestHypervisor(), registry: testRegistry() })
    await expect(m2.load()).rejects.toThrow(
      /the entry 0x0:0x100 \(0x100\) is outside .*guest\.bin, loaded at \[0x7c00, 0x7c02\)/,
    )
    await m2.dispose()
  })
})
