// What a virtio device contributes to the machine, once, whatever transport carries it: the catalogue
// entry that both the virtio-mmio type (`virtio-blk`) and the virtio-pci type (`virtio-blk-pci`)
// are made from (mmio/component.ts, pci/component.ts). A plugin with its own virtio device writes
// one of these and calls virtioMmioType / virtioPciType on it.
import type { ComponentType, JsonSchema } from '@vmm/core'
import type { VirtioDevice } from './device.js'

/** Builds the device of a virtio component from its validated config. */
export type VirtioDeviceFactory = (config: Record<string, unknown>, id: string) => VirtioDevice

/** Where a virtio component type's module binds its VirtioDeviceFactory, for the transport component. */
export const DeviceFactory: symbol = Symbol.for('@vmm/virtio:DeviceFactory')

/**
 * One virtio device type, independent of its transport. The user-visible descriptions are made from
 * `what`, `note` and `detail`: virtio-mmio says `<what> (virtio-mmio[, <note>])<detail>`, virtio-pci
 * `<what>[ (<note>)]<detail> on PCI (virtio-pci, MSI-X)`.
 */
export interface VirtioDeviceDefinition<C = Record<string, unknown>> {
  /** The virtio-mmio type's name; the virtio-pci type is `<name>-pci`. */
  readonly name: string
  /** What the device is: "virtio block device". */
  readonly what: string
  /** A short aside shown in parentheses ("hvc0"). */
  readonly note?: string
  /** The rest of the sentence, with its leading space or colon: " over a raw image file". */
  readonly detail: string
  /** The device's own options (each transport adds its own). */
  readonly schema: { properties: Record<string, JsonSchema>; required?: readonly string[] }
  /** Checks on the config at validation (an image that must exist) and any resources beyond the transport's. */
  readonly resources?: ComponentType<C>['resources']
  /** The device model for a validated config; `id` is the component's id. */
  create(config: C, id: string): VirtioDevice
}

/** The definition, typed for a config `C` (an identity function that lets TypeScript check `create`). */
export function defineVirtioDevice<C>(definition: VirtioDeviceDefinition<C>): VirtioDeviceDefinition<C> {
  return definition
}

export function mmioDescription(d: VirtioDeviceDefinition<never>): string {
  return `${d.what} (virtio-mmio${d.note ? `, ${d.note}` : ''})${d.detail}`
}

export function pciDescription(d: VirtioDeviceDefinition<never>): string {
  return `${d.what}${d.note ? ` (${d.note})` : ''}${d.detail} on PCI (virtio-pci, MSI-X)`
}
