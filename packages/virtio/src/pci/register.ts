import type { ComponentType, PluginRegistry } from '@vmm/core'
import { virtioBalloonType } from '../devices/balloon/balloon.js'
import { virtioBlockType } from '../devices/block/block.js'
import { virtioConsoleType } from '../devices/console/console.js'
import { virtioNetType } from '../devices/net/net.js'
import { virtioRngType } from '../devices/rng/rng.js'
import { virtioVsockType } from '../devices/vsock/vsock.js'
import { virtioPciType } from './component.js'

/** virtio-blk-pci, virtio-net-pci, virtio-rng-pci, virtio-console-pci, virtio-vsock-pci, virtio-balloon-pci. */
export const virtioPciTypes: readonly ComponentType<never>[] = [
  virtioPciType(virtioBlockType),
  virtioPciType(virtioNetType),
  virtioPciType(virtioRngType),
  virtioPciType(virtioConsoleType),
  virtioPciType(virtioVsockType),
  virtioPciType(virtioBalloonType),
] as readonly ComponentType<never>[]

/**
 * Adds the virtio-pci component types to a registry. A board with a PCI host bridge calls it
 * (board-standard does); they need a `pci-host-bridge` component to sit on.
 */
export function registerVirtioPci<R extends PluginRegistry>(registry: R): R {
  for (const type of virtioPciTypes) registry.register(type)
  return registry
}
