// virtio-vsock: the model (device.ts, with packet.ts and connection.ts) and its catalogue entry (vsock.ts).
export * from './device.js'
export * from './packet.js'
export * from './vsock.js'
