// The machine's public vocabulary: its states, how a run ends, what it tells listeners.
import type { UnhandledAccess } from '../bus/device.js'
import type { ComponentRegistry } from '../component/registry.js'
import type { ComponentResources } from '../component/resources.js'
import type { GuestStopKind } from '../component/tokens.js'
import type { Hypervisor, VcpuExit } from '../hypervisor.js'

export type MachineState = 'created' | 'realized' | 'loaded' | 'running' | 'paused' | 'stopped' | 'disposed'

/** How a run ended. `code` is what `vmm run` exits with. */
export interface MachineResult {
  readonly status:
    | 'stopped'
    | 'guest-halt'
    | 'guest-poweroff'
    | 'guest-reset'
    | 'guest-panic'
    | 'guest-exit'
    | 'failed'
  readonly code: number
  readonly reason: string
  /** The exit that ended it, if a vCPU exit did. */
  readonly exit?: VcpuExit
  readonly vcpu?: number
}

export type MachineEvent =
  | { readonly type: 'state'; readonly from: MachineState; readonly to: MachineState }
  | { readonly type: 'exit'; readonly vcpu: number; readonly exit: VcpuExit }
  | { readonly type: 'unhandled'; readonly access: UnhandledAccess }
  /** Something a device reported through MachineControl.report, e.g. the guest's boot-timer write. */
  | {
      readonly type: 'device'
      readonly source: string
      readonly name: string
      readonly data: Readonly<Record<string, unknown>>
    }
  /**
   * The guest stopped itself and that ended the run: at most once per run, whatever reported it
   * (where a control API emits its SHUTDOWN / RESET / GUEST_PANICKED). `source` is the id of the
   * component that reported it, or `vcpu <n>` for a vCPU exit (a KVM system event, a triple fault).
   */
  | {
      readonly type: 'guest'
      readonly kind: GuestStopKind
      readonly reason: string
      readonly source: string
    }

export interface ComponentTiming {
  readonly id: string
  readonly phase: 'build' | 'load' | 'start' | 'pause' | 'resume' | 'reset' | 'stop' | 'dispose'
  readonly ms: number
}

export interface BuiltComponent {
  readonly id: string
  readonly type: string
  readonly instance: unknown
  readonly resources: ComponentResources
}

export interface MachineOptions {
  readonly hypervisor: Hypervisor
  /** Types to use; a registry with the built-in types when absent. Plugins named by the manifest are added to it. */
  readonly registry?: ComponentRegistry
}
