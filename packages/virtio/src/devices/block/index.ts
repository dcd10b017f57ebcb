// virtio-block: the model (device.ts) and its catalogue entry (block.ts).

export * from './block.js'
export * from './device.js'
