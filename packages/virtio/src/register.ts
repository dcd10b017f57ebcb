import type { PluginRegistry } from '@vmm/core'
import { virtioCatalogue } from './catalogue.js'
import { virtioMmioType } from './mmio/component.js'

/** Adds the virtio-mmio component types of the catalogue to a registry (a board, or a plugin host). */
export function registerVirtio<R extends PluginRegistry>(registry: R): R {
  for (const definition of virtioCatalogue) registry.register(virtioMmioType(definition))
  return registry
}
