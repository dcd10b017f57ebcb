import type { ContainerModule } from 'inversify'
import type {
  Disposable,
  Hotpluggable,
  KernelCmdlineContributor,
  Loadable,
  Pausable,
  ShutdownRequester,
  Snapshottable,
  Startable,
  Stoppable,
} from './capabilities.js'

export type { LoadContext } from './capabilities.js'

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
  /**
   * May read files the config names (paths are absolute by then); throw ConfigError to blame a field.
   * `context.restoring`: the machine is rebuilt from a snapshot, so nothing is loaded into it and
   * a loader need not check (or even find) the files it would load.
   */
  resources?(config: C, context?: ResourceContext): readonly ResourceRequest[]
  readonly module: ContainerModule
}

/** What a type's resources() is told about the resolution it is part of. */
export interface ResourceContext {
  /** The manifest is a snapshot's, resolved for Machine.restore: loaders do not run. */
  readonly restoring: boolean
}

/**
 * What a component may do beyond being built: every capability of ./capabilities.ts, each
 * optional. A class `implements Component` to have its method names checked; the machine asks
 * for each capability through its guard (isPausable, ...), never through this type.
 */
export interface Component
  extends Partial<Loadable>,
    Partial<Startable>,
    Partial<Stoppable>,
    Partial<Pausable>,
    Partial<Snapshottable>,
    Partial<Hotpluggable>,
    Partial<ShutdownRequester>,
    Partial<KernelCmdlineContributor>,
    Partial<Disposable> {}
