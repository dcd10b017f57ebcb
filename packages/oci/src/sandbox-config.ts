// What `create` hands the sandbox process (sandbox.ts) in <state dir>/sandbox.json.
import type { ComponentOverride } from '@vmm/core'
import type { Spec } from './config.js'
import type { VmPlan } from './machine.js'
import type { NetPlan } from './network.js'
import type { SandboxJail } from './sandbox-jail.js'

export interface SandboxConfig {
  id: string
  spec: Spec
  plan: VmPlan
  /** 'M' records (mounts.ts) and the hostname, for the agent's 'C'. */
  mountRecords: string[]
  /** The host end of the container's terminal (the pty slave), when process.terminal. */
  consoleSlave?: string
  /** A jailed sandbox's terminal: the pty slave is its fds consoleFd (input) and consoleFd + 1 (output). */
  consoleFd?: number
  /** The jail the sandbox runs in (sandbox-jail.ts), which delete removes. */
  jail?: SandboxJail
  /** Whether the sandbox confines itself with vmm's seccomp filters once the VM is built. */
  seccomp?: boolean
  /** The namespace the guest is connected to (its TAP is the sandbox's fd 4); delete undoes it. */
  network?: NetPlan
  /**
   * Restore this template's snapshot with these overrides instead of booting `plan` (template.ts);
   * `plan` is still booted cold when the restore fails.
   */
  template?: { snapshot: string; overrides: ComponentOverride[] }
}

export const SANDBOX_CONFIG = 'sandbox.json'
