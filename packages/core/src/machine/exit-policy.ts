// What each vCPU exit means for the run, and what each way a guest stops itself ends it with.
// Pure decisions: the machine (machine.ts) carries them out.
import { hex } from '../address.js'
import type { MmioBus } from '../bus/mmio-bus.js'
import type { PioBus } from '../bus/pio-bus.js'
import type { GuestStopKind } from '../component/tokens.js'
import type { ExitAction, ExitHandler, Vcpu, VcpuExit } from '../hypervisor.js'
import type { AddressSpace } from '../memory/address-space.js'
import { describeThrown } from './thrown.js'
import type { MachineResult } from './types.js'

/**
 * `vmm run`'s exit code when the guest failed: its kernel panicked or it triple-faulted (1 is a
 * VMM- or host-side failure, 2 a usage or manifest error, 0 a clean end; packages/cli/src/exit-codes.ts).
 */
export const GUEST_PANIC_EXIT_CODE = 3

/** A run's end without the exit that caused it (the machine adds `exit` and `vcpu`). */
export type RunEnd = Omit<MachineResult, 'exit' | 'vcpu'>

/** The one result each way of a guest stopping itself ends the run with, whoever reported it. */
export function guestStopResult(kind: GuestStopKind, reason: string): RunEnd {
  switch (kind) {
    case 'poweroff':
      return { status: 'guest-poweroff', code: 0, reason }
    case 'reset':
      return { status: 'guest-reset', code: 0, reason }
    case 'panic':
      return { status: 'guest-panic', code: GUEST_PANIC_EXIT_CODE, reason }
    case 'triple-fault':
      // The guest's own failure, not the host's: the same code as a panic.
      return { status: 'failed', code: GUEST_PANIC_EXIT_CODE, reason }
  }
}

/** What the machine does with an exit: carry on, leave the guest, or end the run. */
export type ExitVerdict =
  | { readonly action: 'resume' }
  /** Leave the guest without ending the run: it is pausing, or the run's end is decided already. */
  | { readonly action: 'stop' }
  | { readonly action: 'end'; readonly end: RunEnd }
  | { readonly action: 'guest-stopped'; readonly kind: GuestStopKind; readonly reason: string }

export interface ExitContext {
  /** With the in-kernel irqchip a halted vCPU waits for an interrupt. */
  readonly irqchip: boolean
  /** The machine is pausing or its run has ended: a kick takes the vCPU out for good. */
  readonly leaving: boolean
}

const resume: ExitVerdict = { action: 'resume' }
const end = (e: RunEnd): ExitVerdict => ({ action: 'end', end: e })
const failed = (reason: string) => end({ status: 'failed', code: 1, reason })

/** The exit policy: what `exit` on `vcpu` means for the run. */
export function judgeExit(exit: VcpuExit, vcpu: number, context: ExitContext): ExitVerdict {
  switch (exit.kind) {
    case 'kick':
      return context.leaving ? { action: 'stop' } : resume
    case 'irq-window-open':
      return resume
    case 'hlt':
      // With the in-kernel irqchip KVM waits for an interrupt itself; without it nothing can wake
      // the vCPU, so a halt is the guest saying it is done (how raw test guests end).
      return context.irqchip ? resume : end({ status: 'guest-halt', code: 0, reason: 'guest halted' })
    case 'system-event':
      // KVM_EXIT_SYSTEM_EVENT (Documentation/virt/kvm/api.rst): SHUTDOWN and RESET come from PSCI
      // or the hypervisor's own platform devices, CRASH from a paravirtual crash report.
      if (exit.name === 'shutdown') return guestStopped('poweroff', 'guest powered off')
      if (exit.name === 'reset') return guestStopped('reset', 'guest requested a reset')
      if (exit.name === 'crash') return guestStopped('panic', 'guest system event: crash')
      return failed(`guest system event: ${exit.name}`)
    case 'shutdown':
      return guestStopped('triple-fault', `vCPU ${vcpu}: triple fault (shutdown)`)
    case 'internal-error': {
      const bytes = [...exit.instructionBytes].map((b) => b.toString(16).padStart(2, '0')).join(' ')
      return failed(
        `vCPU ${vcpu}: internal error ${exit.suberror}${bytes ? ` at instruction bytes ${bytes}` : ''}`,
      )
    }
    case 'fail-entry':
      return failed(`vCPU ${vcpu}: VM entry failed (hardware reason ${hex(Number(exit.hardwareReason))})`)
    case 'error':
      return failed(`vCPU ${vcpu}: running failed with ${exit.code}`)
    case 'disposed':
      return end({ status: 'stopped', code: 0, reason: 'the VM was disposed' })
    default:
      return failed(`vCPU ${vcpu}: unexpected ${exit.kind} exit`)
  }
}

function guestStopped(kind: GuestStopKind, reason: string): ExitVerdict {
  return { action: 'guest-stopped', kind, reason }
}

export interface ExitDispatch {
  readonly pioBus: PioBus
  readonly mmioBus: MmioBus
  /** With `memoryModel: stacked`: its MMIO regions are dispatched before the MMIO bus. */
  readonly addressSpace: AddressSpace | undefined
  /** The id of the component whose device answered a PIO access at `port`, for fault messages. */
  ownerOfPort?(port: number): string | undefined
  /** A device threw: end the run with this. */
  fail(end: RunEnd): void
  /** Every other exit (ExitHandler.onExit). */
  onExit(exit: VcpuExit, vcpu: Vcpu): ExitAction
}

/**
 * The handler every vCPU runs with: bus accesses to the devices, everything else to `onExit`.
 * Device code must not take the vCPU loop down: a throw fails the run with the access named.
 * Written out per access kind, without a closure per call: this is the path of every exit.
 */
export function exitHandler({
  pioBus,
  mmioBus,
  addressSpace,
  ownerOfPort,
  fail,
  onExit,
}: ExitDispatch): ExitHandler {
  const threw = (what: string, address: number, e: unknown, data?: Uint8Array) => {
    data?.fill(0xff)
    const owner = what.startsWith('port') ? ownerOfPort?.(address) : undefined
    fail({
      status: 'failed',
      code: 1,
      reason: `${what} ${hex(address)}: ${owner === undefined ? 'device' : `device ${owner}`} threw: ${describeThrown(e)}`,
    })
  }
  return {
    pioIn: (port, data) => {
      try {
        pioBus.read(port, data)
      } catch (e) {
        threw('port read', port, e, data)
      }
    },
    pioOut: (port, data) => {
      try {
        pioBus.write(port, data)
      } catch (e) {
        threw('port write', port, e)
      }
    },
    // MMIO regions of the stacked address space first (they move, e.g. BARs), then the bus.
    mmioRead: (address, data) => {
      try {
        if (!addressSpace?.mmioRead(address, data)) mmioBus.read(address, data)
      } catch (e) {
        threw('MMIO read', address, e, data)
      }
    },
    mmioWrite: (address, data) => {
      try {
        if (!addressSpace?.mmioWrite(address, data)) mmioBus.write(address, data)
      } catch (e) {
        threw('MMIO write', address, e)
      }
    },
    onExit,
  }
}
