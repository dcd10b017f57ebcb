// QMP's RunState (qapi/run-state.json) for a machine state: query-status and HMP `info status`.
import type { MachineState } from '@vmm/core'

export function runState(s: MachineState): string {
  switch (s) {
    case 'running':
      return 'running'
    case 'paused':
      return 'paused'
    case 'stopped':
    case 'disposed':
      return 'shutdown'
    default:
      return 'prelaunch'
  }
}
