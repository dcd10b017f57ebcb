// virtio-console: the model (device.ts, backend.ts) and its catalogue entry (console.ts).

export * from './backend.js'
export * from './console.js'
export * from './device.js'
