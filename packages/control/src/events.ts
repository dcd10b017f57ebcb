// The control plane's events: what the machine emits, named as QMP names them (QEMU
// qapi/run-state.json, qdev.json, machine.json) so that a QMP transport passes them through
// unchanged. Our own extensions carry the `x-` prefix qmp-spec reserves for experimental names.
import type { MachineEvent } from '@vmm/core'

export interface ControlEvent {
  readonly event: string
  readonly data?: Readonly<Record<string, unknown>>
  /** Milliseconds since the Unix epoch, when it happened (qmp-spec §2.5 puts it in `timestamp`). */
  readonly at: number
}

export const EVENT_NAMES = [
  'STOP',
  'RESUME',
  'SHUTDOWN',
  'RESET',
  'POWERDOWN',
  'GUEST_PANICKED',
  'DEVICE_DELETED',
  'BALLOON_CHANGED',
  'x-boot-time',
] as const

/**
 * The events one machine event means, if any: a state change to or from `paused` is STOP or
 * RESUME; the guest stopping itself is SHUTDOWN (with QMP's ShutdownCause), preceded by RESET or
 * GUEST_PANICKED where QEMU sends them; a component unplugged is DEVICE_DELETED; the boot
 * timer's milestone is `x-boot-time`.
 */
export function controlEvents(e: MachineEvent, at = Date.now()): ControlEvent[] {
  switch (e.type) {
    case 'state':
      if (e.to === 'paused') return [{ event: 'STOP', at }]
      if (e.from === 'paused' && e.to === 'running') return [{ event: 'RESUME', at }]
      return []
    case 'guest':
      switch (e.kind) {
        case 'poweroff':
          return [{ event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' }, at }]
        case 'reset':
        case 'triple-fault':
          // The run ends on a guest reset (as QEMU's -no-reboot): RESET, then SHUTDOWN.
          return [
            { event: 'RESET', data: { guest: true, reason: 'guest-reset' }, at },
            { event: 'SHUTDOWN', data: { guest: true, reason: 'guest-reset' }, at },
          ]
        case 'panic':
          return [
            { event: 'GUEST_PANICKED', data: { action: 'poweroff' }, at },
            { event: 'SHUTDOWN', data: { guest: true, reason: 'guest-panic' }, at },
          ]
      }
      return []
    case 'device':
      if (e.name === 'unplugged')
        return [{ event: 'DEVICE_DELETED', data: { device: e.source, path: qomPath(e.source) }, at }]
      if (e.name === 'boot-time') return [{ event: 'x-boot-time', data: { source: e.source, ...e.data }, at }]
      return []
    default:
      return []
  }
}

/** Where QEMU puts a device that has an id (qdev: /machine/peripheral/<id>). */
export const qomPath = (id: string) => `/machine/peripheral/${id}`
