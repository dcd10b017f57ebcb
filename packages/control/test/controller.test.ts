import { afterEach, describe, expect, it } from 'vitest'
import { type ControlEvent, Controller } from '../src/index.js'
import { type FakeBalloon, runningMachine, type Slot } from './fixtures.js'

let cleanup: (() => Promise<void>) | undefined
afterEach(async () => {
  await cleanup?.()
  cleanup = undefined
})

async function controlled() {
  const m = await runningMachine()
  const c = new Controller(m)
  const events: ControlEvent[] = []
  c.on((e) => events.push(e))
  cleanup = () => m.dispose()
  return { m, c, events }
}

describe('the command layer over a Machine', () => {
  it('stops and continues the machine, with STOP and RESUME and the status to match', async () => {
    const { m, c, events } = await controlled()
    expect(await c.execute('query-status')).toEqual({ running: true, singlestep: false, status: 'running' })
    expect(await c.execute('stop')).toEqual({})
    expect(m.state).toBe('paused')
    expect(await c.execute('query-status')).toMatchObject({ running: false, status: 'paused' })
    await c.execute('stop') // stopping a paused machine is no error, and no second STOP
    await c.execute('cont')
    expect(m.state).toBe('running')
    expect(events.map((e) => e.event)).toEqual(['STOP', 'RESUME'])
    expect(events[0]!.at).toBeGreaterThan(1e12)
  })

  it('refuses unknown commands and unknown, missing or ill-typed arguments before doing anything', async () => {
    const { m, c } = await controlled()
    await expect(c.execute('no-such')).rejects.toMatchObject({ errorClass: 'CommandNotFound' })
    await expect(c.execute('stop', { now: true })).rejects.toThrow("parameter 'now' is unexpected")
    await expect(c.execute('stop', [])).rejects.toThrow('"arguments" must be a JSON object')
    await expect(c.execute('balloon', { value: '1' })).rejects.toThrow(
      "invalid parameter type for 'value', expected: int",
    )
    await expect(c.execute('device_del', {})).rejects.toThrow("parameter 'id' is missing")
    await expect(c.execute('device_add', { driver: 'test-slot', id: 'x', label: 7 })).rejects.toThrow(/label/)
    expect(m.state).toBe('running')
    expect(m.components.map((b) => b.id)).toEqual(['guest'])
  })

  it('hot-plugs any component type with its manifest properties and deletes it with DEVICE_DELETED', async () => {
    const { m, c, events } = await controlled()
    await c.execute('device_add', { driver: 'test-slot', id: 'slot1', label: 'a' })
    expect(m.component<Slot>('slot1').log).toEqual(['plugged'])
    expect(await c.execute('x-query-components')).toEqual([
      { id: 'guest', type: 'raw-image', references: {}, added: false },
      { id: 'slot1', type: 'test-slot', references: {}, added: true },
    ])
    await expect(c.execute('device_add', { driver: 'no-such-type', id: 'y' })).rejects.toThrow(/no-such-type/)
    await expect(c.execute('device_del', { id: 'nothing' })).rejects.toMatchObject({
      errorClass: 'DeviceNotFound',
    })
    await expect(c.execute('device_del', { id: 'guest' })).rejects.toThrow('cannot be removed')
    expect(await c.execute('device_del', { id: 'slot1' })).toEqual({})
    await expect.poll(() => events.map((e) => e.event)).toContain('DEVICE_DELETED')
    expect(events.find((e) => e.event === 'DEVICE_DELETED')!.data).toEqual({
      device: 'slot1',
      path: '/machine/peripheral/slot1',
    })
    expect(m.components.map((b) => b.id)).toEqual(['guest'])
  })

  it('folds blockdev-add back ends into device_add drive= and checks the names', async () => {
    const { c } = await controlled()
    await c.execute('blockdev-add', {
      driver: 'raw',
      'node-name': 'd0',
      file: { driver: 'file', filename: '/x.img' },
    })
    await expect(
      c.execute('blockdev-add', { driver: 'file', 'node-name': 'd0', filename: '/y' }),
    ).rejects.toThrow('exists already')
    await expect(c.execute('blockdev-add', { driver: 'qcow2', 'node-name': 'd1' })).rejects.toThrow(
      'not supported',
    )
    await expect(c.execute('device_add', { driver: 'test-slot', id: 's', netdev: 'd0' })).rejects.toThrow(
      "'netdev' names a block back end",
    )
    await expect(
      c.execute('device_add', { driver: 'test-slot', id: 's', drive: 'd9' }),
    ).rejects.toMatchObject({
      errorClass: 'DeviceNotFound',
    })
    await expect(c.execute('device_add', { driver: 'test-slot', id: 's', drive: 'd0' })).rejects.toThrow(
      /path/,
    )
    await c.execute('blockdev-del', { 'node-name': 'd0' })
    await expect(c.execute('blockdev-del', { 'node-name': 'd0' })).rejects.toMatchObject({
      errorClass: 'DeviceNotFound',
    })
  })

  it('answers the queries and says what it cannot do', async () => {
    const { c } = await controlled()
    expect(await c.execute('query-cpus-fast')).toMatchObject([{ 'cpu-index': 0, target: 'x86_64' }])
    expect(await c.execute('query-block')).toEqual([])
    expect(await c.execute('query-version')).toMatchObject({
      qemu: { major: 7 },
      package: expect.stringContaining('vmm'),
    })
    const names = ((await c.execute('query-commands')) as { name: string }[]).map((x) => x.name)
    expect(names).toEqual(
      expect.arrayContaining(['stop', 'cont', 'device_add', 'qmp_capabilities', 'query-balloon']),
    )
    await expect(c.execute('query-balloon')).rejects.toMatchObject({ errorClass: 'DeviceNotActive' })
    // The test board has no power button.
    await expect(c.execute('system_powerdown')).rejects.toThrow('no component can ask')
  })

  it('sets the balloon target from the guest size QMP gives, and reports BALLOON_CHANGED as the guest follows', async () => {
    const { c, events } = await controlled()
    await c.execute('device_add', { driver: 'test-balloon', id: 'balloon' })
    expect(await c.execute('query-balloon')).toEqual({ actual: 1 << 20 })
    await expect(c.execute('balloon', { value: 2 << 20 })).rejects.toThrow('between 1 and')
    await c.execute('balloon', { value: 768 << 10 }) // leave 768 KiB of the 1 MiB: 64 pages in the balloon
    await expect.poll(() => events.map((e) => e.event)).toContain('BALLOON_CHANGED')
    expect(events.find((e) => e.event === 'BALLOON_CHANGED')!.data).toEqual({ actual: 768 << 10 })
    expect(await c.execute('query-balloon')).toEqual({ actual: 768 << 10 })
  })

  it('reports BALLOON_CHANGED from a balloon that tells its changes, each time, without polling', async () => {
    const { m, c, events } = await controlled()
    await c.execute('device_add', { driver: 'test-balloon', id: 'balloon' })
    const d = m.component<FakeBalloon>('balloon').device
    let tell: ((pages: number) => void) | undefined
    Object.assign(d, {
      watchActual: (l: (pages: number) => void) => {
        tell = l
        return () => {}
      },
    })
    await c.execute('balloon', { value: 768 << 10 })
    await c.execute('balloon', { value: 512 << 10 }) // subscribed once
    tell!(16) // the guest wrote actual = 16 pages
    tell!(32)
    expect(events.filter((e) => e.event === 'BALLOON_CHANGED').map((e) => e.data)).toEqual([
      { actual: (1 << 20) - 16 * 4096 },
      { actual: (1 << 20) - 32 * 4096 },
    ])
  })

  it('quits: answers first, then the run ends with SHUTDOWN host-qmp-quit, once', async () => {
    const { m, c, events } = await controlled()
    expect(await c.execute('quit')).toEqual({})
    const r = await m.done
    expect(r.status).toBe('stopped')
    await new Promise((r) => setImmediate(r))
    expect(events.filter((e) => e.event === 'SHUTDOWN').map((e) => e.data)).toEqual([
      { guest: false, reason: 'host-qmp-quit' },
    ])
    await expect(c.execute('stop')).rejects.toThrow('shutdown')
  })

  it('system_reset resets the machine in place and sends RESET; a paused machine stays paused', async () => {
    const { m, c, events } = await controlled()
    await c.execute('system_reset')
    expect(m.state).toBe('running')
    expect(events.at(-1)).toMatchObject({
      event: 'RESET',
      data: { guest: false, reason: 'host-qmp-system-reset' },
    })
    await c.execute('stop')
    await c.execute('system_reset')
    expect(m.state).toBe('paused')
    expect(events.map((e) => e.event)).toEqual(['RESET', 'STOP', 'RESET'])
  })
})
