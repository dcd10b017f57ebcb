// A guest stopping itself is one result and one `guest` event, whoever saw it: a component through
// MachineControl.guestStopped or a vCPU exit (a KVM system event), the first reason winning.
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { ComponentType } from '../src/component/component-type.js'
import { type GuestStopKind, type MachineControl, Tokens } from '../src/component/tokens.js'
import { GUEST_PANIC_EXIT_CODE, judgeExit } from '../src/machine/exit-policy.js'
import { Machine, type MachineEvent } from '../src/machine/machine.js'
import { TestHypervisor, type TestVcpu } from '../src/testing/test-hypervisor.js'
import { ContainerModule, inject, injectable } from '../src/third-party/inversify.js'
import { fixture } from './fixtures.js'
import { testRegistry } from './test-types.js'

/** A power controller: holds its MachineControl for the test; a guest write of 1 powers off. */
@injectable()
class PowerController {
  constructor(@inject(Tokens.MachineControl) readonly control: MachineControl) {}
  read(_offset: number, data: Uint8Array): void {
    data.fill(0)
  }
  write(_offset: number, data: Uint8Array): void {
    if (data[0] === 1) this.control.guestStopped('poweroff', 'guest powered off (power controller)')
  }
}

const powerType: ComponentType = {
  name: 'test-power',
  description: 'test: a power controller',
  schema: { properties: {} },
  resources: () => [{ kind: 'pio', name: 'port', size: 1 }],
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(PowerController)),
}

/** The port at which the test vCPU turns a guest write into a KVM_EXIT_SYSTEM_EVENT exit. */
const SYSTEM_EVENT_PORT = 0xf8
const SYSTEM_EVENTS = ['', 'shutdown', 'reset', 'crash']
const POWER_PORT = 0xf0

// A guest that spins forever: jmp $
const spin = Uint8Array.of(0xeb, 0xfe)
/** mov al, value; out port, al; jmp $ */
const writeThenSpin = (port: number, value: number) => Uint8Array.of(0xb0, value, 0xe6, port, 0xeb, 0xfe)

async function build(guest: Uint8Array) {
  const registry = testRegistry()
  registry.register(powerType)
  const hypervisor = new TestHypervisor()
  const dir = fixture({ 'guest.bin': guest })
  const m = await Machine.fromObject(
    {
      machine: { memory: '1MiB' },
      components: {
        guest: { type: 'raw-image', file: join(dir, 'guest.bin'), address: 0x7c00 },
        power: { type: 'test-power', resources: { port: POWER_PORT } },
      },
    },
    { hypervisor, registry },
  )
  const events: MachineEvent[] = []
  m.on((e) => events.push(e))
  const vcpu = hypervisor.vms[0]!.vcpus[0]!
  return { m, events, vcpu, control: m.component<PowerController>('power').control }
}

/**
 * Makes the test vCPU report a guest write to SYSTEM_EVENT_PORT as KVM does a system event (an
 * exit to onExit, not a port access); `after` runs right after the exit is handled.
 */
function reportSystemEvents(vcpu: TestVcpu, after: () => void = () => {}): void {
  const run = vcpu.run.bind(vcpu)
  vcpu.run = (handler) =>
    run({
      ...handler,
      pioOut: (port, data, v) => {
        if (port !== SYSTEM_EVENT_PORT) return handler.pioOut(port, data, v)
        const name = SYSTEM_EVENTS[data[0]!]!
        handler.onExit({ kind: 'system-event', type: data[0]!, name, data: [] }, v)
        after()
      },
    })
}

const guestEvents = (events: MachineEvent[]) => events.filter((e) => e.type === 'guest')

describe('a guest stopping itself', () => {
  it('is the same result and the same event whether a component or a KVM system event reports it', async () => {
    const byDevice = await build(writeThenSpin(POWER_PORT, 1))
    const deviceResult = await byDevice.m.run()
    const byExit = await build(writeThenSpin(SYSTEM_EVENT_PORT, 1))
    reportSystemEvents(byExit.vcpu)
    const exitResult = await byExit.m.run()

    expect(deviceResult).toEqual({
      status: 'guest-poweroff',
      code: 0,
      reason: 'guest powered off (power controller)',
    })
    expect(exitResult).toMatchObject({
      status: 'guest-poweroff',
      code: 0,
      reason: 'guest powered off',
      vcpu: 0,
      exit: { kind: 'system-event', name: 'shutdown' },
    })
    expect(guestEvents(byDevice.events)).toEqual([
      { type: 'guest', kind: 'poweroff', reason: 'guest powered off (power controller)', source: 'power' },
    ])
    expect(guestEvents(byExit.events)).toEqual([
      { type: 'guest', kind: 'poweroff', reason: 'guest powered off', source: 'vcpu 0' },
    ])
    // The guest event comes before the machine stops, so a listener hears it while it is running.
    const order = byExit.events.filter((e) => e.type === 'guest' || e.type === 'state')
    expect(order.map((e) => (e.type === 'state' ? e.to : e.type))).toEqual([
      'loaded',
      'running',
      'guest',
      'stopped',
    ])
    await byDevice.m.dispose()
    await byExit.m.dispose()
  })

  it('keeps the first reason: later reports, from a device or an exit, change nothing', async () => {
    // A KVM system event, then a device sees the same power-off (the console prints it as well).
    const a = await build(writeThenSpin(SYSTEM_EVENT_PORT, 1))
    const late = () => a.control.guestStopped('reset', 'guest requested a reset (too late)')
    reportSystemEvents(a.vcpu, late)
    expect(await a.m.run()).toMatchObject({ status: 'guest-poweroff', reason: 'guest powered off' })
    expect(guestEvents(a.events)).toHaveLength(1)
    await a.m.dispose()

    // A device first, then a system event and a requestStop.
    const b = await build(spin)
    await b.m.load()
    await b.m.start()
    b.control.guestStopped('panic', 'guest kernel panic: ---[ end Kernel panic - not syncing: test')
    b.control.guestStopped('poweroff', 'guest powered off (later)')
    b.control.requestStop('debug-exit', 7)
    expect(await b.m.done).toEqual({
      status: 'guest-panic',
      code: GUEST_PANIC_EXIT_CODE,
      reason: 'guest kernel panic: ---[ end Kernel panic - not syncing: test',
    })
    expect(guestEvents(b.events)).toEqual([
      {
        type: 'guest',
        kind: 'panic',
        reason: 'guest kernel panic: ---[ end Kernel panic - not syncing: test',
        source: 'power',
      },
    ])
    await b.m.dispose()
  })

  it.each([
    ['poweroff', 'guest-poweroff', 0],
    ['reset', 'guest-reset', 0],
    ['panic', 'guest-panic', GUEST_PANIC_EXIT_CODE],
    ['triple-fault', 'failed', GUEST_PANIC_EXIT_CODE],
  ] as const)('%s ends the run as %s with exit code %d', async (kind: GuestStopKind, status, code) => {
    const { m, control, events } = await build(spin)
    await m.load()
    await m.start()
    control.guestStopped(kind, `because ${kind}`)
    expect(await m.done).toEqual({ status, code, reason: `because ${kind}` })
    expect(guestEvents(events)).toEqual([{ type: 'guest', kind, reason: `because ${kind}`, source: 'power' }])
    await m.dispose()
  })

  it('maps the KVM system events and a triple fault onto the same kinds', () => {
    const context = { irqchip: false, leaving: false }
    const event = (name: string) => judgeExit({ kind: 'system-event', type: 0, name, data: [] }, 0, context)
    expect(event('shutdown')).toEqual({
      action: 'guest-stopped',
      kind: 'poweroff',
      reason: 'guest powered off',
    })
    expect(event('reset')).toEqual({
      action: 'guest-stopped',
      kind: 'reset',
      reason: 'guest requested a reset',
    })
    expect(event('crash')).toEqual({
      action: 'guest-stopped',
      kind: 'panic',
      reason: 'guest system event: crash',
    })
    expect(event('wakeup')).toEqual({
      action: 'end',
      end: { status: 'failed', code: 1, reason: 'guest system event: wakeup' },
    })
    expect(judgeExit({ kind: 'shutdown' }, 2, context)).toEqual({
      action: 'guest-stopped',
      kind: 'triple-fault',
      reason: 'vCPU 2: triple fault (shutdown)',
    })
  })

  it('is not the guest stopping itself when a device ends the run another way, or the host stopped it first', async () => {
    const a = await build(spin)
    await a.m.load()
    await a.m.start()
    a.control.requestStop('guest wrote 3 to debug-exit', 3)
    expect(await a.m.done).toEqual({ status: 'guest-exit', code: 3, reason: 'guest wrote 3 to debug-exit' })
    expect(guestEvents(a.events)).toEqual([])
    await a.m.dispose()

    const b = await build(spin)
    await b.m.load()
    await b.m.start()
    const stopped = b.m.stop()
    b.control.guestStopped('poweroff', 'guest powered off (after the host stopped it)')
    expect(await stopped).toMatchObject({ status: 'stopped' })
    expect(guestEvents(b.events)).toEqual([])
    await b.m.dispose()
  })
})
