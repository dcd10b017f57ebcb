import type { ComponentType, PluginRegistry } from '@vmm/core'
import { virtioCatalogue } from '../catalogue.js'
import { virtioPciType } from './component.js'

/** virtio-blk-pci, virtio-net-pci, virtio-rng-pci, virtio-console-pci, virtio-vsock-pci, virtio-balloon-pci. */
export const virtioPciTypes: readonly ComponentType<never>[] = virtioCatalogue.map((d) =>
  virtioPciType(d),
) as readonly ComponentType<never>[]

/**
 * Adds the virtio-pci component types to a registry. A board with a PCI host bridge calls it
 * (board-standard does); they need a `pci-host-bridge` component to sit on.
 */
export function registerVirtioPci<R extends PluginRegistry>(registry: R): R {
  for (const type of virtioPciTypes) registry.register(type)
  return registry
}
