// Where virtio-pci's structures are (virtio 1.2 §4.1.4): IDs, capability types, the common
// configuration's fields and widths, and the BAR layout the transport (./transport.ts) decodes.
import { DeviceType } from '../spec.js'

/** PCI vendor of every virtio device; device IDs are 0x1040 + the virtio device type (§4.1.2.1). */
export const VIRTIO_PCI_VENDOR = 0x1af4
export const VIRTIO_PCI_DEVICE_BASE = 0x1040
/** §4.1.2.1: non-transitional devices have revision 1 or higher and a subsystem device ID >= 0x40. */
export const VIRTIO_PCI_REVISION = 1
/** "No vector" for config_msix_vector and queue_msix_vector (§4.1.5.1.2). */
export const VIRTIO_MSI_NO_VECTOR = 0xffff

/** cfg_type of the virtio vendor capabilities (§4.1.4). */
export const PciCapType = { COMMON: 1, NOTIFY: 2, ISR: 3, DEVICE: 4, PCI: 5 } as const

/** struct virtio_pci_common_cfg (§4.1.4.3), offsets and natural widths. */
export const CommonCfg = {
  DEVICE_FEATURE_SELECT: 0x00,
  DEVICE_FEATURE: 0x04,
  DRIVER_FEATURE_SELECT: 0x08,
  DRIVER_FEATURE: 0x0c,
  CONFIG_MSIX_VECTOR: 0x10,
  NUM_QUEUES: 0x12,
  DEVICE_STATUS: 0x14,
  CONFIG_GENERATION: 0x15,
  QUEUE_SELECT: 0x16,
  QUEUE_SIZE: 0x18,
  QUEUE_MSIX_VECTOR: 0x1a,
  QUEUE_ENABLE: 0x1c,
  QUEUE_NOTIFY_OFF: 0x1e,
  QUEUE_DESC: 0x20,
  QUEUE_DRIVER: 0x28,
  QUEUE_DEVICE: 0x30,
  /** The structure's length without the VIRTIO_F_NOTIFICATION_DATA / queue-reset fields we do not offer. */
  SIZE: 0x38,
} as const

/** ISR status bits (§4.1.4.5). */
export const IsrBit = { QUEUE: 1, CONFIG: 2 } as const

/**
 * Where the structures sit in BAR 0, one 4 KiB page each as QEMU lays them out, so each could be
 * mapped on its own. The notification area gives queue `n` its own doorbell at 4 * n.
 */
export const Layout = {
  BAR: 0,
  COMMON: 0x0000,
  ISR: 0x1000,
  DEVICE: 0x2000,
  NOTIFY: 0x3000,
  MSIX_TABLE: 0x4000,
  MSIX_PBA: 0x5000,
  SIZE: 0x8000,
  NOTIFY_OFF_MULTIPLIER: 4,
} as const

/** Device configuration the driver may map; a device's own structure is shorter and reads 0 past its end. */
export const DEVICE_CFG_LENGTH = 0x1000

/**
 * Class codes per device type (PCI Code and ID Assignment, Appendix D), the ones virtio-pci devices
 * have always reported, so guests that look at the class see the usual kind of device.
 */
export const CLASS_CODES: Readonly<Record<number, number>> = {
  [DeviceType.NET]: 0x020000, // network controller, Ethernet
  [DeviceType.BLOCK]: 0x010000, // mass storage controller, SCSI
  [DeviceType.CONSOLE]: 0x078000, // simple communication controller, other
}
export const OTHER_CLASS = 0x00ff00

export function isAddressField(offset: number): boolean {
  return (
    offset === CommonCfg.QUEUE_DESC || offset === CommonCfg.QUEUE_DRIVER || offset === CommonCfg.QUEUE_DEVICE
  )
}

/** The natural width of the common configuration field at `offset`; 0 where none starts. */
export function fieldWidth(offset: number): number {
  const C = CommonCfg
  if (offset < C.CONFIG_MSIX_VECTOR) return offset % 4 === 0 ? 4 : 0
  if (offset === C.DEVICE_STATUS || offset === C.CONFIG_GENERATION) return 1
  if (offset < C.QUEUE_DESC) return offset % 2 === 0 ? 2 : 0
  if (offset < C.SIZE) return offset % 4 === 0 ? 4 : 0
  return 0
}
