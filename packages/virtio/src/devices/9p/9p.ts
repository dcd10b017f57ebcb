import { statSync } from 'node:fs'
import { ConfigError, errnoWords, pathSchema } from '@vmm/core'
import { defineVirtioDevice } from '../../definition.js'
import { virtioMmioType } from '../../mmio/component.js'
import { P9_TAG_MAX, P9Device } from './device.js'

export interface P9Config {
  /** The mount tag the guest names (`mount -t 9p -o trans=virtio <tag> /mnt`). */
  tag: string
  /** The shared host directory, relative to the manifest. */
  path: string
  /** Refuse every write-type request with EROFS. */
  readonly: boolean
}

/** The catalogue entry of virtio-9p: both its virtio-mmio and its virtio-pci type are made from it. */
export const p9Definition = defineVirtioDevice<P9Config>({
  name: 'virtio-9p',
  what: 'virtio 9P file system',
  detail: ': a host directory shared with the guest over 9P2000.L',
  schema: {
    properties: {
      tag: {
        type: 'string',
        minLength: 1,
        maxLength: P9_TAG_MAX,
        pattern: '^[!-~]+$',
        description:
          'the mount tag the guest names: mount -t 9p -o trans=virtio <tag> /mnt (printable ASCII, no spaces)',
      },
      path: { ...pathSchema, description: 'the host directory to share, relative to the manifest' },
      readonly: { type: 'boolean', default: false, description: 'refuse every write with EROFS' },
    },
    required: ['tag', 'path'],
  },
  resources(config) {
    let directory: boolean
    try {
      directory = statSync(config.path).isDirectory()
    } catch (e) {
      throw new ConfigError('path', `shared directory ${config.path}: ${errnoWords(e)}`)
    }
    if (!directory) throw new ConfigError('path', `shared directory ${config.path} is not a directory`)
    return []
  },
  create: (config) => new P9Device({ tag: config.tag, path: config.path, readonly: config.readonly }),
})

export const virtioP9Type = virtioMmioType(p9Definition)
