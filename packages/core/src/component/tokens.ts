import type { ServiceIdentifier } from 'inversify'
import type { MmioBus } from '../bus/mmio-bus.js'
import type { PioBus } from '../bus/pio-bus.js'
import type { VirtualMachine } from '../hypervisor.js'
import type { AddressSpace } from '../memory/address-space.js'
import type { GuestMemory } from '../memory/guest-memory.js'
import type { ComponentResources } from './resources.js'

/** Stops the machine from inside, e.g. a debug-exit device or a reset register. */
export interface MachineControl {
  /** Ends the run with `code` (0: success); the machine stops all vCPUs. */
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
