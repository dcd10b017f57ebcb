import { pathSchema } from '@vmm/core'
import { virtioMmioType } from '../../component.js'
import { VsockDevice } from './device.js'

export interface VsockConfig {
  /** The guest's context id (3 or more; 0-2 are reserved, §5.10.4). */
  cid: number
  /** The host Unix socket; guest connections to port P go to `<path>_<P>`. */
  path: string
}

export const virtioVsockType = virtioMmioType<VsockConfig>({
  name: 'virtio-vsock',
  description: 'virtio socket device (virtio-mmio): guest AF_VSOCK to host Unix sockets, as Firecracker',
  schema: {
    properties: {
      cid: { type: 'integer', minimum: 3, maximum: 0xffff_fffe, default: 3 },
      path: { ...pathSchema, description: 'host Unix socket; guest port P connects to <path>_<P>' },
    },
    required: ['path'],
  },
  create: (config) => new VsockDevice(config.cid, config.path),
})
