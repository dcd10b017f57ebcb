import { pathSchema } from '@vmm/core'
import { defineVirtioDevice } from '../../definition.js'
import { virtioMmioType } from '../../mmio/component.js'
import { VsockDevice } from './device.js'

export interface VsockConfig {
  /** The guest's context id (3 or more; 0-2 are reserved, §5.10.4). */
  cid: number
  /** The host Unix socket; guest connections to port P go to `<path>_<P>`. */
  path: string
}

/** The catalogue entry of virtio-vsock: both its virtio-mmio and its virtio-pci type are made from it. */
export const vsockDefinition = defineVirtioDevice<VsockConfig>({
  name: 'virtio-vsock',
  what: 'virtio socket device',
  detail: ': guest AF_VSOCK to host Unix sockets, as Firecracker',
  schema: {
    properties: {
      cid: { type: 'integer', minimum: 3, maximum: 0xffff_fffe, default: 3 },
      path: { ...pathSchema, description: 'host Unix socket; guest port P connects to <path>_<P>' },
    },
    required: ['path'],
  },
  create: (config) => new VsockDevice(config.cid, config.path),
})

export const virtioVsockType = virtioMmioType(vsockDefinition)
