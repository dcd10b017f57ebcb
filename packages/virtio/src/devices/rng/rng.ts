import { virtioMmioType } from '../../component.js'
import { RngDevice } from './device.js'

/** virtio-rng has no options: it always draws from the host's CSPRNG. */
export type RngConfig = Record<string, never>

export const virtioRngType = virtioMmioType<RngConfig>({
  name: 'virtio-rng',
  description: 'virtio entropy device (virtio-mmio): guest /dev/hwrng from the host CSPRNG',
  schema: { properties: {} },
  create: () => new RngDevice(),
})
