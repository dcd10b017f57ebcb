import { defineVirtioDevice } from '../../definition.js'
import { virtioMmioType } from '../../mmio/component.js'
import { RngDevice } from './device.js'

/** virtio-rng has no options: it always draws from the host's CSPRNG. */
export type RngConfig = Record<string, never>

/** The catalogue entry of virtio-rng: both its virtio-mmio and its virtio-pci type are made from it. */
export const rngDefinition = defineVirtioDevice<RngConfig>({
  name: 'virtio-rng',
  what: 'virtio entropy device',
  detail: ': guest /dev/hwrng from the host CSPRNG',
  schema: { properties: {} },
  create: () => new RngDevice(),
})

export const virtioRngType = virtioMmioType(rngDefinition)
