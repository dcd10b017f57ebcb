import { sizeSchema } from '@vmm/core'
import { defineVirtioDevice } from '../../definition.js'
import { virtioMmioType } from '../../mmio/component.js'
import { BALLOON_PAGE, BalloonDevice } from './device.js'

export interface BalloonConfig {
  stats: boolean
  deflateOnOom: boolean
  /** Bytes the balloon should hold from the start (a multiple of 4 KiB is used). */
  target: number
}

/** The catalogue entry of virtio-balloon: both its virtio-mmio and its virtio-pci type are made from it. */
export const balloonDefinition = defineVirtioDevice<BalloonConfig>({
  name: 'virtio-balloon',
  what: 'virtio memory balloon',
  detail: ': inflate/deflate, statistics, deflate-on-OOM',
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

export const virtioBalloonType = virtioMmioType(balloonDefinition)
