import type { ServiceIdentifier } from 'inversify'
import type { MmioBus } from '../bus/mmio-bus.js'
import type { PioBus } from '../bus/pio-bus.js'
import type { VirtualMachine } from '../hypervisor.js'
import type { AddressSpace } from '../memory/address-space.js'
import type { GuestMemory } from '../memory/guest-memory.js'
import type { ComponentResources } from './resources.js'

/**
 * How a guest ended its own run, whatever device saw it: a KVM system event, ACPI S5 or the reset
 * register, the i8042 reset line, the console's last words, a triple fault. Each maps to one
 * MachineResult status and one `guest` MachineEvent (machine/exit-policy.ts).
 * - poweroff: the guest turned itself off (result `guest-poweroff`, exit code 0).
 * - reset: the guest asked for a reset; vmm does not reboot, the run ends (`guest-reset`, 0).
 * - panic: the guest kernel crashed and said so (`guest-panic`, GUEST_PANIC_EXIT_CODE).
 * - triple-fault: the vCPU shut down (KVM_EXIT_SHUTDOWN); hardware would reset, vmm counts it as
 *   a failure of the guest (`failed`, 1).
 */
export type GuestStopKind = 'poweroff' | 'reset' | 'panic' | 'triple-fault'

/** What a component may tell the machine it is part of; each component gets its own. */
export interface MachineControl {
  /**
   * The guest stopped itself (`kind`); `reason` is for people ("guest powered off (ACPI S5)").
   * Ends the run unless something else ended it first: the first reason wins.
   */
  guestStopped(kind: GuestStopKind, reason: string): void
  /**
   * Ends the run with `code` (0: success) for a reason that is not the guest stopping itself: a
   * debug-exit device, the console's quit key. The result's status is `guest-exit`.
   */
  requestStop(reason: string, code: number): void
  /** Tells the machine's listeners something a device saw (a `device` MachineEvent), e.g. the boot timer. */
  report(source: string, name: string, data?: Readonly<Record<string, unknown>>): void
}

// Symbol.for, not Symbol(): a plugin that ends up with its own copy of @vmm/core still resolves
// the same tokens.
const t = <T>(name: string) => Symbol.for(`@vmm/core:${name}`) as ServiceIdentifier<T>

/** The injection tokens the framework binds. Use them with explicit `@inject(...)` on every parameter. */
export const Tokens = {
  /** What a component type's module binds: the component instance. */
  Component: t<unknown>('Component'),
  /** The node's validated config, defaults filled (per component). */
  Config: t<Record<string, unknown>>('Config'),
  /** The node's id (per component). */
  Id: t<string>('Id'),
  /** Allocated windows and interrupt lines (per component). */
  Resources: t<ComponentResources>('Resources'),
  GuestMemory: t<GuestMemory>('GuestMemory'),
  PioBus: t<PioBus>('PioBus'),
  MmioBus: t<MmioBus>('MmioBus'),
  VirtualMachine: t<VirtualMachine>('VirtualMachine'),
  MachineControl: t<MachineControl>('MachineControl'),
  /** The stacked address space; bound only with `machine.memoryModel: stacked`. */
  AddressSpace: t<AddressSpace>('AddressSpace'),
} as const

/** The token under which a component's referenced instance is bound, by reference property name. */
export function referenceToken<T = unknown>(property: string): ServiceIdentifier<T> {
  return t<T>(`ref:${property}`)
}
