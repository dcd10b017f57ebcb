import { ConfigError, checkInputFile, pathSchema } from '@vmm/core'
import { defineVirtioDevice } from '../../definition.js'
import { virtioMmioType } from '../../mmio/component.js'
import { BLOCK_ID_BYTES, BlockDevice, SECTOR_SIZE } from './device.js'

export interface BlockConfig {
  /** The raw image, relative to the manifest. */
  path: string
  readOnly: boolean
  /** GET_ID serial; the component id when absent. */
  serial?: string
}

/** The catalogue entry of virtio-blk: both its virtio-mmio and its virtio-pci type are made from it. */
export const blockDefinition = defineVirtioDevice<BlockConfig>({
  name: 'virtio-blk',
  what: 'virtio block device',
  detail: ' over a raw image file',
  schema: {
    properties: {
      path: { ...pathSchema, description: 'the raw disk image, relative to the manifest' },
      readOnly: { type: 'boolean', default: false, description: 'offer VIRTIO_BLK_F_RO and refuse writes' },
      serial: { type: 'string', maxLength: BLOCK_ID_BYTES, description: 'the ID the guest reads (GET_ID)' },
    },
    required: ['path'],
  },
  resources(config) {
    // A block device is a fine disk; its size (BLKGETSIZE64) is read when the device opens it.
    const { size, blockDevice } = checkInputFile('path', 'disk image', config.path, {
      allowBlockDevice: true,
    })
    if (!blockDevice && size < SECTOR_SIZE)
      throw new ConfigError('path', `${config.path} is smaller than one 512-byte sector`)
    return []
  },
  create: (config, id) =>
    new BlockDevice({ path: config.path, readOnly: config.readOnly, serial: config.serial ?? id }),
})

export const virtioBlockType = virtioMmioType(blockDefinition)
