// @vmm/oci as a library: the pieces the vmm-oci command is made of, for tests and embedders.
export { checkProcess, checkSpec, DEFAULT_SIZE, readSpec, type Spec, type VmSize, vmSize } from './config.js'
export { OciError } from './errors.js'
export { type VmPlan, vmManifest } from './machine.js'
export { type GuestMounts, guestMounts, parseOptions, type Share } from './mounts.js'
export { decodeRecords, encodeFrame, encodeRecords, FrameReader, Msg } from './protocol.js'
export { parseSignal } from './signals.js'
