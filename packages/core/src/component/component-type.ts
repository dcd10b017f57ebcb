import type { ContainerModule } from 'inversify'
import type { Vcpu } from '../hypervisor.js'
import type { GuestMemory } from '../memory/guest-memory.js'

/** JSON Schema (draft 2020-12 subset that ajv understands), as plain data. */
export type JsonSchema = Record<string, unknown>

/** A resource a component needs; the manifest may pin its value, else the machine allocates it. */
export type ResourceRequest =
  /** A window of I/O ports, e.g. 8 ports for a 16550 UART. */
  | { readonly kind: 'pio'; readonly name: string; readonly size: number; readonly align?: number }
  /** A window of guest physical addresses for MMIO registers. */
  | { readonly kind: 'mmio'; readonly name: string; readonly size: number; readonly align?: number }
  /** An interrupt line (a GSI on the in-kernel irqchip). */
  | { readonly kind: 'irq'; readonly name: string }
  /** Guest RAM that must exist, e.g. where a loader puts an image; fixed, never allocated. */
  | { readonly kind: 'ram'; readonly name: string; readonly base: number; readonly size: number }

/** A manifest property holding the id (or list of ids) of other components. */
export interface ReferenceSpec {
  readonly property: string
  /** The component types it may point at; any type when absent. */
  readonly types?: readonly string[]
}

/** Thrown by ComponentType.resources to blame one property of the manifest node. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  constructor(
    readonly property: string,
    message: string,
  ) {
    super(message)
  }
}

/**
 * A kind of component a manifest can name (`type: <name>`). The framework validates the node
 * against `schema`, resolves `references`, allocates `resources`, then builds the component by
 * loading `module` into a child container that already holds the node's config, id, resources and
 * referenced instances (see Tokens); the module must bind Tokens.Component.
 */
export interface ComponentType<C = Record<string, unknown>> {
  readonly name: string
  /** One line, shown by `vmm schema` and in editor hovers. */
  readonly description: string
  /** The node's own fields: JSON Schema `properties` and `required`. `type` and `resources` are added by the framework. */
  readonly schema: { readonly properties: Record<string, JsonSchema>; readonly required?: readonly string[] }
  readonly references?: readonly ReferenceSpec[]
  /** May read files the config names (paths are absolute by then); throw ConfigError to blame a field. */
  resources?(config: C): readonly ResourceRequest[]
  readonly module: ContainerModule
}

/** What a component may do at each lifecycle step; every method is optional. */
export interface Component {
  /**
   * A kernel command-line parameter that announces this component to the guest, for devices the
   * guest cannot discover (`virtio_mmio.device=...`): a boot component appends the ones its
   * command line lacks (LoadContext.kernelCmdline).
   */
  readonly kernelCmdline?: string
  /** Put images in guest memory and set initial vCPU state (after every component is built). */
  load?(context: LoadContext): void | Promise<void>
  /**
   * Asks the guest to shut itself down, as a user at the machine would: press the ACPI power
   * button or the keyboard's Power key. Returns true when this component delivered the request; what the
   * guest does with it is the guest's business (Machine.requestShutdown).
   */
  requestShutdown?(): boolean
  start?(): void | Promise<void>
  /**
   * For a component added to a running machine (Machine.hotplug), after start: tell the guest it
   * is there (a PCI hot-plug notification). Throw when the guest cannot be told; the machine then
   * removes the component again.
   */
  plugged?(): void | Promise<void>
  /**
   * Machine.unplug: ask the guest to let go of the component (a PCI eject request); resolve once it
   * has, after which the machine stops and disposes it. Components without it cannot be removed
   * from a running machine.
   */
  unplug?(): Promise<void>
  pause?(): void | Promise<void>
  resume?(): void | Promise<void>
  stop?(): void | Promise<void>
  /** Release what the component holds; called once, in reverse build order. */
  dispose?(): void | Promise<void>
}

export interface LoadContext {
  readonly memory: GuestMemory
  readonly vcpus: readonly Vcpu[]
  /** Every component's `kernelCmdline`, in build order. */
  readonly kernelCmdline: readonly string[]
}
