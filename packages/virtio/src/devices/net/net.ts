import { createHash } from 'node:crypto'
import { defineVirtioDevice } from '../../definition.js'
import { virtioMmioType } from '../../mmio/component.js'
import { TapBackend } from './backend.js'
import { NetDevice, parseMac } from './device.js'

export interface NetConfig {
  /** The TAP interface to attach to, created if it does not exist (needs CAP_NET_ADMIN). */
  tap: string
  /**
   * An open TAP fd this process was handed instead of opening `tap` itself (vmm-oci's sandbox gets
   * one made inside the container's network namespace); `tap` must then be its interface's name.
   */
  fd?: number
  /** The guest's MAC; derived from the component id when absent. */
  mac?: string
  /** Carry virtio_net_hdr through the TAP so checksum and TSO offloads can be offered. */
  offloads: boolean
}

/** A stable, locally administered unicast MAC for `id` (52:54:00 is QEMU's; 06 marks "local"). */
export function macFor(id: string): Uint8Array {
  const h = createHash('sha256').update(id).digest()
  return Uint8Array.of(0x06, 0x76, 0x6d, h[0]!, h[1]!, h[2]!)
}

/** The catalogue entry of virtio-net: both its virtio-mmio and its virtio-pci type are made from it. */
export const netDefinition = defineVirtioDevice<NetConfig>({
  name: 'virtio-net',
  what: 'virtio network device',
  detail: ' on a Linux TAP interface',
  schema: {
    properties: {
      tap: { type: 'string', minLength: 1, maxLength: 15, description: 'TAP interface name' },
      fd: { type: 'integer', minimum: 3, description: 'an inherited TAP fd (its interface is `tap`)' },
      mac: { type: 'string', pattern: '^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$' },
      offloads: {
        type: 'boolean',
        default: true,
        description: 'offer checksum and TSO offloads via vnet_hdr',
      },
    },
    required: ['tap'],
  },
  create: (config, id) =>
    new NetDevice(
      new TapBackend(config.tap, config.offloads, config.fd),
      config.mac ? parseMac(config.mac) : macFor(id),
    ),
})

export const virtioNetType = virtioMmioType(netDefinition)
