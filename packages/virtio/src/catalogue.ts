// The virtio devices this package ships, once each: registerVirtio makes their virtio-mmio types
// from this list and registerVirtioPci their virtio-pci types, so a device added here gets both.
import type { VirtioDeviceDefinition } from './definition.js'
import { p9Definition } from './devices/9p/index.js'
import { balloonDefinition } from './devices/balloon/index.js'
import { blockDefinition } from './devices/block/index.js'
import { consoleDefinition } from './devices/console/index.js'
import { netDefinition } from './devices/net/index.js'
import { rngDefinition } from './devices/rng/index.js'
import { vsockDefinition } from './devices/vsock/index.js'

/** block, net, rng, console, vsock, balloon, 9p: in the order the types are registered. */
export const virtioCatalogue: readonly VirtioDeviceDefinition<never>[] = [
  blockDefinition,
  netDefinition,
  rngDefinition,
  consoleDefinition,
  vsockDefinition,
  balloonDefinition,
  p9Definition,
] as readonly VirtioDeviceDefinition<never>[]
