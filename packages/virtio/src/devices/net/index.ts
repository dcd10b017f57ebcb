// virtio-net: the model (device.ts, backend.ts) and its catalogue entry (net.ts).

export * from './backend.js'
export * from './device.js'
export * from './net.js'
