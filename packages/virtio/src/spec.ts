// Numbers from the virtio 1.2 specification that more than one module needs.

/** Device status bits (§2.1). */
export const Status = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const

/** Reserved feature bits the transport handles for every device (§6). */
export const Feature = {
  RING_INDIRECT_DESC: 28n,
  RING_EVENT_IDX: 29n,
  VERSION_1: 32n,
} as const

/** Device type ids (§5). */
export const DeviceType = {
  NET: 1,
  BLOCK: 2,
  CONSOLE: 3,
  ENTROPY: 4,
  BALLOON: 5,
  P9: 9,
  VSOCK: 19,
} as const

/** Whether feature bit `bit` is set in `features`. */
export function hasFeature(features: bigint, bit: bigint): boolean {
  return ((features >> bit) & 1n) === 1n
}

/** `1n << bit` for each bit, or-ed together. */
export function featureBits(...bits: bigint[]): bigint {
  let f = 0n
  for (const b of bits) f |= 1n << b
  return f
}
