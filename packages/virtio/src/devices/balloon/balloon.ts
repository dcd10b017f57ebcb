import { sizeSchema } from '@vmm/core'
import { virtioMmioType } from '../../component.js'
import { BALLOON_PAGE, BalloonDevice } from './device.js'

export interface BalloonConfig {
  stats: boolean
  deflateOnOom: boolean
  /** Bytes the balloon should hold from the start (a multiple of 4 KiB is used). */
  target: number
}

export const virtioBalloonType = virtioMmioType<BalloonConfig>({
  name: 'virtio-balloon',
  description: 'virtio memory balloon (virtio-mmio): inflate/deflate, statistics, deflate-on-OOM',
  schema: {
    properties: {
      stats: { type: 'boolean', default: true, description: 'offer the statistics queue' },
      deflateOnOom: {
        type: 'boolean',
        default: true,
        description: 'let the guest deflate when out of memory',
      },
      target: { ...sizeSchema, default: 0, description: 'initial balloon size (bytes, or e.g. 64MiB)' },
    },
  },
  create: (config) =>
    new BalloonDevice({
      stats: config.stats,
      deflateOnOom: config.deflateOnOom,
      targetPages: Math.floor(config.target / BALLOON_PAGE),
    }),
})
