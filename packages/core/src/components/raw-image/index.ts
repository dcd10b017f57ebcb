// raw-image: the loader (device.ts) and its component type (raw-image.ts).
export * from './device.js'
export * from './raw-image.js'
