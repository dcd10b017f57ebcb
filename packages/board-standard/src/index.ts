// @vmm/board-standard: the parts of a PC-like machine on top of the micro board's: a PCI Express
// host bridge with MSI-X (from @vmm/pci), virtio devices on it (virtio-pci from @vmm/virtio), ACPI
// tables and ACPI power-off, as a vmm plugin. List it after @vmm/board-micro under `plugins:`
// (examples/standard.yaml).
import type { PLUGIN_API_VERSION, PluginRegistry } from '@vmm/core'
import { pciHostBridgeType, pciTestDeviceType } from '@vmm/pci'
import { registerVirtioPci } from '@vmm/virtio'
import { acpiType } from './acpi/component.js'
import { vmgenidType } from './vmgenid/index.js'

export * as aml from './acpi/aml.js'
export { Acpi, type AcpiConfig, type AcpiDevice, type AcpiState, acpiType } from './acpi/component.js'
export { PCI_HOTPLUG_REGISTERS_SIZE, PciHotplugRegisters } from './acpi/pci-hotplug.js'
export { AcpiPmRegisters, type PmEvent } from './acpi/pm.js'
export {
  type AcpiBlob,
  type AcpiDeviceAml,
  type AcpiMachine,
  buildAcpi,
  checksum,
  dsdt,
  dsdtAml,
  fadt,
  GED_EVENT_OFFSET,
  GED_PCI_HOTPLUG,
  GED_POWER_BUTTON,
  GED_VMGENID,
  madt,
  mcfg,
  RESET_VALUE,
  rsdp,
  S5_SLP_TYP,
  SLP_EN,
  slotName,
  xsdt,
} from './acpi/tables.js'
export * from './vmgenid/index.js'

export const vmmPluginApi: typeof PLUGIN_API_VERSION = 1

export function register(registry: PluginRegistry): void {
  registry.register(pciHostBridgeType)
  registry.register(pciTestDeviceType)
  registry.register(acpiType)
  registry.register(vmgenidType)
  // virtio-blk-pci, virtio-rng-pci, ...: the virtio devices on the host bridge, with MSI-X.
  registerVirtioPci(registry)
}
