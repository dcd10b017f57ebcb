// @vmm/virtio: virtio 1.2 split virtqueues, the virtio-mmio and virtio-pci transports and the
// devices (block, net, rng, console, vsock, balloon, 9p), each a component type. As a vmm plugin
// (`plugins: ["@vmm/virtio"]`) it registers the virtio-mmio ones; a board can call registerVirtio
// itself, and a board with PCI registerVirtioPci (the `<device>-pci` types).
import type { PLUGIN_API_VERSION, PluginRegistry } from '@vmm/core'
import { registerVirtio } from './register.js'

export { virtioCatalogue } from './catalogue.js'
export {
  DeviceFactory,
  defineVirtioDevice,
  mmioDescription,
  pciDescription,
  type VirtioDeviceDefinition,
  type VirtioDeviceFactory,
} from './definition.js'
export { completeChain, type DeviceContext, drainQueue, takeChain, type VirtioDevice } from './device.js'
export {
  Errno as P9Errno,
  MAX_MSIZE as P9_MAX_MSIZE,
  Msg as P9Msg,
  P9_MAX_IN_FLIGHT,
  P9_QUEUE_SIZE,
  P9_TAG_MAX,
  type P9Config,
  P9Device,
  type P9DeviceOptions,
  P9Feature,
  type P9Reply,
  type P9Request,
  P9Server,
  type P9ServerOptions,
  p9Definition,
  virtioP9Type,
} from './devices/9p/index.js'
export { type BalloonConfig, balloonDefinition, virtioBalloonType } from './devices/balloon/balloon.js'
export {
  BALLOON_PAGE,
  BalloonDevice,
  BalloonFeature,
  type BalloonOptions,
  BalloonStat,
  type BalloonStats,
} from './devices/balloon/device.js'
export { type BlockConfig, blockDefinition, virtioBlockType } from './devices/block/block.js'
export {
  BLOCK_ID_BYTES,
  BlockDevice,
  BlockFeature,
  type BlockOptions,
  BlockRequest,
  BlockStatus,
  SECTOR_SIZE,
} from './devices/block/device.js'
export { type ConsoleBackend, SocketBackend, StdioBackend } from './devices/console/backend.js'
export { type ConsoleConfig, consoleDefinition, virtioConsoleType } from './devices/console/console.js'
export { CONSOLE_INPUT_LIMIT, ConsoleDevice, ConsoleFeature } from './devices/console/device.js'
export { type NetBackend, type NetOffloads, TapBackend } from './devices/net/backend.js'
export { NET_HDR_SIZE, type NetCounters, NetDevice, NetFeature, parseMac } from './devices/net/device.js'
export { macFor, type NetConfig, netDefinition, virtioNetType } from './devices/net/net.js'
export { RNG_MAX_REQUEST, RngDevice } from './devices/rng/device.js'
export { type RngConfig, rngDefinition, virtioRngType } from './devices/rng/rng.js'
export { VSOCK_BUF_ALLOC, VsockDevice } from './devices/vsock/device.js'
export { HOST_CID, ShutdownFlag, VSOCK_HDR_SIZE, type VsockHeader, VsockOp } from './devices/vsock/packet.js'
export { type VsockConfig, virtioVsockType, vsockDefinition } from './devices/vsock/vsock.js'
export {
  acceleratorFor,
  type Disposable,
  type DoorbellMatch,
  type InterruptTrigger,
  NotifierAccelerator,
  type VirtioAccelerator,
} from './mmio/accelerator.js'
export {
  VirtioMmio,
  type VirtioMmioOptions,
  virtioMmioCmdline,
  virtioMmioType,
} from './mmio/component.js'
export {
  Interrupt,
  MMIO_MAGIC,
  MMIO_WINDOW_SIZE,
  MmioReg,
  type TransportEvents,
  VENDOR_ID,
  VirtioMmioTransport,
} from './mmio/transport.js'
export { VirtioPci, type VirtioPciOptions, virtioPciType } from './pci/component.js'
export { registerVirtioPci, virtioPciTypes } from './pci/register.js'
export {
  CommonCfg,
  IsrBit,
  Layout as VirtioPciLayout,
  type NotifyCounters,
  PciCapType,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_DEVICE_BASE,
  VIRTIO_PCI_REVISION,
  VIRTIO_PCI_VENDOR,
  VirtioPciTransport,
} from './pci/transport.js'
export { gather, scatter, views } from './queue/buffers.js'
export { VirtqueueError, type VirtqueueErrorCode } from './queue/errors.js'
export {
  DescFlags,
  DescriptorChain,
  type GuestBuffer,
  MAX_QUEUE_SIZE,
  memoryFence,
  SplitQueue,
} from './queue/split-queue.js'
export { registerVirtio } from './register.js'
export { DeviceType, Feature, featureBits, hasFeature, Status } from './spec.js'
export { type InterruptSink, TRANSPORT_FEATURES, TransportCore } from './transport/core.js'

export const vmmPluginApi: typeof PLUGIN_API_VERSION = 1

/** The plugin entry point: registers every virtio-mmio component type. */
export function register(registry: PluginRegistry): void {
  registerVirtio(registry)
}
