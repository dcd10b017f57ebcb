// virtio-9p: the device (device.ts), its catalogue entry (9p.ts) and the 9P2000.L server it
// carries (server.ts with session.ts, file-ops.ts, dir-ops.ts over host.ts; protocol.ts the codec).
export * from './9p.js'
export * from './device.js'
export * from './protocol.js'
export * from './server.js'
export type { P9Reply, P9Request } from './session.js'
