import type { ComponentType } from './component-type.js'

export class RegistryError extends Error {
  override readonly name = 'RegistryError'
  constructor(
    readonly code: 'DUPLICATE_TYPE',
    readonly type: string,
    /** Who registered it first: 'built-in' or a plugin name. */
    readonly existingOrigin: string,
  ) {
    super(`component type "${type}" is already registered by ${existingOrigin}`)
  }
}

/**
 * The component types a manifest may name: built-ins plus what plugins contribute. Lists from here
 * are never undefined (Theia's ContributionProvider), so callers do not guard.
 */
export class ComponentRegistry {
  private readonly types = new Map<string, { type: ComponentType; origin: string }>()

  register<C>(type: ComponentType<C>, origin = 'built-in'): void {
    const existing = this.types.get(type.name)
    if (existing) throw new RegistryError('DUPLICATE_TYPE', type.name, existing.origin)
    // The manifest validator guarantees the config matches C before the type sees it.
    this.types.set(type.name, { type: type as unknown as ComponentType, origin })
  }

  get(name: string): ComponentType | undefined {
    return this.types.get(name)?.type
  }

  /** Who registered `name` ('built-in' or the plugin's name). */
  origin(name: string): string | undefined {
    return this.types.get(name)?.origin
  }

  /** Type names, sorted. */
  names(): string[] {
    return [...this.types.keys()].sort()
  }

  all(): ComponentType[] {
    return this.names().map((n) => this.types.get(n)!.type)
  }
}
