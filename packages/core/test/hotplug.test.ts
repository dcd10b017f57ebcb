import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { ComponentType } from '../src/component/component-type.js'
import type { ComponentResources } from '../src/component/resources.js'
import { Tokens } from '../src/component/tokens.js'
import { Machine, type MachineEvent } from '../src/machine/machine.js'
import { TestHypervisor } from '../src/testing/test-hypervisor.js'
import { ContainerModule, inject, injectable } from '../src/third-party/inversify.js'
import { fixture } from './fixtures.js'
import { testRegistry } from './test-types.js'

/** A hot-pluggable port device that logs its lifecycle; `failPlug` makes the announcement throw. */
@injectable()
class Slot {
  readonly log: string[] = []
  release: (() => void) | undefined
  constructor(
    @inject(Tokens.Config) private readonly config: { failPlug: boolean },
    @inject(Tokens.Resources) readonly resources: ComponentResources,
  ) {}
  read(_offset: number, data: Uint8Array): void {
    data.fill(0x5a)
  }
  write(): void {}
  start(): void {
    this.log.push('start')
  }
  pause(): void {
    this.log.push('pause')
  }
  resume(): void {
    this.log.push('resume')
  }
  plugged(): void {
    this.log.push('plugged')
    if (this.config.failPlug) throw new Error('no hot-plug controller')
  }
  unplug(): Promise<void> {
    this.log.push('unplug')
    return new Promise((r) => (this.release = r))
  }
  stop(): void {
    this.log.push('stop')
  }
  dispose(): void {
    this.log.push('dispose')
  }
}

const slotType: ComponentType = {
  name: 'test-slot',
  description: 'test: a hot-pluggable port device',
  schema: { properties: { failPlug: { type: 'boolean', default: false } } },
  resources: () => [{ kind: 'pio', name: 'port', size: 4, align: 4 }],
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(Slot)),
}

async function running() {
  const registry = testRegistry()
  registry.register(slotType)
  const dir = fixture({ 'guest.bin': Uint8Array.of(0xeb, 0xfe) }) // jmp $
  const m = await Machine.fromObject(
    {
      machine: { memory: '1MiB', irqchip: true },
      components: { guest: { type: 'raw-image', file: join(dir, 'guest.bin'), address: 0x7c00 } },
    },
    { hypervisor: new TestHypervisor(), registry },
  )
  const events: string[] = []
  m.on((e: MachineEvent) => e.type === 'device' && events.push(`${e.source}:${e.name}`))
  await m.load()
  await m.start()
  return { m, events }
}

const portOf = (m: Machine, id: string) => m.component<Slot>(id).resources.window('port').base

describe('hot-plug through the capability drivers', () => {
  it('starts, announces and later removes a Hotpluggable component, one change at a time', async () => {
    const { m, events } = await running()
    // Two at once: the second resolves against what the first left, so they get different ports.
    await Promise.all([m.hotplug('a', { type: 'test-slot' }), m.hotplug('b', { type: 'test-slot' })])
    const a = m.component<Slot>('a')
    expect(a.log).toEqual(['start', 'plugged'])
    expect(portOf(m, 'a')).not.toBe(portOf(m, 'b'))
    const read = new Uint8Array(1)
    m.pioBus.read(portOf(m, 'a'), read)
    expect(read[0]).toBe(0x5a)

    const removed = m.unplug('a', 5000)
    await new Promise((r) => setTimeout(r, 5))
    expect(a.log.at(-1)).toBe('unplug')
    expect(m.components.map((c) => c.id)).toContain('a') // the guest has not let go yet
    a.release!()
    await removed
    expect(a.log).toEqual(['start', 'plugged', 'unplug', 'stop', 'dispose'])
    expect(m.components.map((c) => c.id)).toEqual(['guest', 'b'])
    expect(events).toEqual(['a:hotplugged', 'b:hotplugged', 'a:unplugged'])
    await m.stop()
    await m.dispose()
  })

  it('pauses a component joining a paused machine before announcing it, and resumes it with the machine', async () => {
    const { m } = await running()
    await m.pause()
    await m.hotplug('a', { type: 'test-slot' })
    const a = m.component<Slot>('a')
    expect(a.log).toEqual(['start', 'pause', 'plugged'])
    await m.resume()
    expect(a.log.at(-1)).toBe('resume')
    await m.stop()
    await m.dispose()
  })

  it('removes a component the guest cannot be told about, and refuses to unplug what is not Hotpluggable', async () => {
    const { m } = await running()
    await expect(m.hotplug('bad', { type: 'test-slot', failPlug: true })).rejects.toThrow(
      'no hot-plug controller',
    )
    expect(m.components.map((c) => c.id)).toEqual(['guest'])
    await expect(m.unplug('guest')).rejects.toThrow(
      'guest (raw-image) cannot be removed from a running machine',
    )
    // Nothing of the failed one stays behind: the next addition proceeds as on a fresh machine.
    await m.hotplug('good', { type: 'test-slot' })
    expect(m.component<Slot>('good').log).toEqual(['start', 'plugged'])
    await m.stop()
    await m.dispose()
  })
})
