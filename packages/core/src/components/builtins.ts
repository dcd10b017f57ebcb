import type { ComponentRegistry } from '../component/registry.js'
import { debugconType } from './debugcon/index.js'
import { rawImageType } from './raw-image/index.js'

/** Adds the component types core ships with; returns the registry for chaining. */
export function registerBuiltins(registry: ComponentRegistry): ComponentRegistry {
  registry.register(rawImageType)
  registry.register(debugconType)
  return registry
}
