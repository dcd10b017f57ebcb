import type { PluginRegistry } from '@vmm/core'
import { virtioBalloonType } from './devices/balloon/balloon.js'
import { virtioBlockType } from './devices/block/block.js'
import { virtioConsoleType } from './devices/console/console.js'
import { virtioNetType } from './devices/net/net.js'
import { virtioRngType } from './devices/rng/rng.js'
import { virtioVsockType } from './devices/vsock/vsock.js'

/** Adds the virtio-mmio component types to a registry (a board, or a plugin host). */
export function registerVirtio<R extends PluginRegistry>(registry: R): R {
  registry.register(virtioBlockType)
  registry.register(virtioNetType)
  registry.register(virtioRngType)
  registry.register(virtioConsoleType)
  registry.register(virtioVsockType)
  registry.register(virtioBalloonType)
  return registry
}
