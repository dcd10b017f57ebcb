// @vmm/virtio: virtio 1.2 split virtqueues, the virtio-mmio transport and the devices.
export {
  type VirtioDeviceFactory,
  VirtioMmio,
  type VirtioMmioOptions,
  virtioMmioCmdline,
  virtioMmioType,
} from './component.js'
export { completeChain, type DeviceContext, drainQueue, type VirtioDevice } from './device.js'
export { RNG_MAX_REQUEST, RngDevice } from './devices/rng/device.js'
export { type RngConfig, virtioRngType } from './devices/rng/rng.js'
export type { Disposable, InterruptTrigger, VirtioAccelerator } from './mmio/accelerator.js'
export { acceleratorFor, KvmAccelerator } from './mmio/kvm.js'
export {
  Interrupt,
  MMIO_MAGIC,
  MMIO_WINDOW_SIZE,
  MmioReg,
  type TransportEvents,
  VENDOR_ID,
  VirtioMmioTransport,
} from './mmio/transport.js'
export { gather, scatter, views } from './queue/buffers.js'
export { badRange, VirtqueueError, type VirtqueueErrorCode } from './queue/errors.js'
export {
  DescFlags,
  DescriptorChain,
  type GuestBuffer,
  MAX_QUEUE_SIZE,
  memoryFence,
  SplitQueue,
} from './queue/split-queue.js'
export { DeviceType, Feature, featureBits, hasFeature, Status } from './spec.js'
