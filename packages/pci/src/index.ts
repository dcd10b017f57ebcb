// @vmm/pci: PCI/PCIe for vmm boards. The host bridge, type 0 configuration space, BARs, MSI/MSI-X
// and INTx as a library, plus the component types a board plugin registers (board-standard does).
export {
  AddressSpaceBarMapper,
  BAR_PRIORITY,
  type BarConflict,
  type BarMapper,
  type BarWindow,
  BusBarMapper,
} from './bar-mapper.js'
export { type HostBridgeState, restoreBridgeState, saveBridgeState } from './bridge-state.js'
export {
  CONFIG_ADDRESS_PORT,
  PciHostBridgeComponent,
  type PciHostBridgeConfig,
  pciHostBridgeType,
} from './components/host-bridge.js'
export {
  CapabilityId,
  CONFIG_SPACE_SIZE,
  Command,
  ConfigSpace,
  overlaps,
  PCIE_CONFIG_SPACE_SIZE,
  Reg,
  readLe,
  Status,
  writeLe,
} from './config-space.js'
export {
  type Bar,
  type BarKind,
  type BarSpec,
  type InterruptPath,
  type PciAttachment,
  PciDevice,
  type PciDeviceOptions,
} from './device.js'
export {
  PciTestDevice,
  PciTestDeviceComponent,
  type PciTestDeviceConfig,
  type PciTestDeviceState,
  pciDeviceProperties,
  pciTestDeviceType,
  TESTDEV_DEVICE,
  TESTDEV_ID,
  TESTDEV_VENDOR,
} from './devices/testdev/index.js'
export { checkReadOnlyBits, type PciFunctionState } from './function-state.js'
export {
  type AddressWindow,
  type BridgeRegisters,
  formatPciAddress,
  HOST_BRIDGE_DEVICE,
  HOST_BRIDGE_VENDOR,
  type HostBridgeOptions,
  type HotplugController,
  type PciAddress,
  PciError,
  type PciErrorCode,
  PciHostBridge,
} from './host-bridge.js'
export { MSIX_ENTRY_SIZE, MsiCapability, MsixCapability, type MsixState } from './msi.js'
export {
  defaultIrqchipRoutes,
  FIRST_MSI_GSI,
  GsiMsiRouter,
  type MsiDelivery,
  type MsiMessage,
  type MsiRouter,
  type MsiVector,
  msiRouterFor,
  RecordingMsiRouter,
} from './msi-router.js'
