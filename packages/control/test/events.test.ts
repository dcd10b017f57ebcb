import { describe, expect, it } from 'vitest'
import { controlEvents } from '../src/index.js'

describe('machine events as QMP events', () => {
  it('maps pause/resume, the guest stopping itself, unplug and the boot timer; drops the rest', () => {
    const at = 1_700_000_000_123
    const names = (e: Parameters<typeof controlEvents>[0]) =>
      controlEvents(e, at).map((x) => [x.event, x.data])
    expect(names({ type: 'state', from: 'running', to: 'paused' })).toEqual([['STOP', undefined]])
    expect(names({ type: 'state', from: 'paused', to: 'running' })).toEqual([['RESUME', undefined]])
    expect(names({ type: 'state', from: 'loaded', to: 'running' })).toEqual([])
    expect(names({ type: 'guest', kind: 'poweroff', reason: 'S5', source: 'acpi' })).toEqual([
      ['SHUTDOWN', { guest: true, reason: 'guest-shutdown' }],
    ])
    expect(names({ type: 'guest', kind: 'triple-fault', reason: 'x', source: 'vcpu 0' })).toEqual([
      ['RESET', { guest: true, reason: 'guest-reset' }],
      ['SHUTDOWN', { guest: true, reason: 'guest-reset' }],
    ])
    expect(names({ type: 'guest', kind: 'panic', reason: 'x', source: 'pvpanic' })[0]![0]).toBe(
      'GUEST_PANICKED',
    )
    expect(
      names({ type: 'device', source: 'disk2', name: 'unplugged', data: { type: 'virtio-blk-pci' } }),
    ).toEqual([['DEVICE_DELETED', { device: 'disk2', path: '/machine/peripheral/disk2' }]])
    expect(names({ type: 'device', source: 'boot-timer', name: 'boot-time', data: { ms: 812 } })).toEqual([
      ['x-boot-time', { source: 'boot-timer', ms: 812 }],
    ])
    expect(names({ type: 'device', source: 'pci', name: 'bar-conflict', data: {} })).toEqual([])
    expect(controlEvents({ type: 'state', from: 'running', to: 'paused' }, at)[0]!.at).toBe(at)
  })
})
