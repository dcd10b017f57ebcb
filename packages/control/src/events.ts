// The control plane's events: what the machine emits, named as QMP names them (QEMU
// qapi/run-state.json, qdev.json, machine.json) so that a QMP transport passes them through
// unchanged. Our own extensions carry the `x-` prefix qmp-spec reserves for experimental names.
import type { MachineEvent } from '@vmm/core'
import type { TypeSpec } from './introspect.js'

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

/** QMP's ShutdownCause (qapi/run-state.json), the values we send. */
const SHUTDOWN_CAUSE: TypeSpec = {
  enum: [
    'host-error',
    'host-qmp-quit',
    'host-qmp-system-reset',
    'host-signal',
    'guest-shutdown',
    'guest-reset',
    'guest-panic',
  ],
}

/** Each event's `data`, for query-qmp-schema (none: no data). */
export const EVENT_DATA: Readonly<Record<(typeof EVENT_NAMES)[number], TypeSpec | undefined>> = {
  STOP: undefined,
  RESUME: undefined,
  POWERDOWN: undefined,
  SHUTDOWN: { object: { guest: 'bool', reason: SHUTDOWN_CAUSE } },
  RESET: { object: { guest: 'bool', reason: SHUTDOWN_CAUSE } },
  GUEST_PANICKED: { object: { action: { enum: ['pause', 'poweroff', 'run'] } } },
  DEVICE_DELETED: { object: { '*device': 'str', path: 'str' } },
  BALLOON_CHANGED: { object: { actual: 'int' } },
  'x-boot-time': { object: { source: 'str', ms: 'number' } },
}

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
