// virtio-vsock: the model (device.ts, packet.ts) and its catalogue entry (vsock.ts).
export * from './device.js'
export * from './packet.js'
export * from './vsock.js'
