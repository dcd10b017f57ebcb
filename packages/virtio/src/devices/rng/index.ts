// virtio-rng: the model (device.ts) and its catalogue entry (rng.ts).
export * from './device.js'
export * from './rng.js'
