// debugcon: the model (device.ts) and its component type (debugcon.ts).
export * from './debugcon.js'
export * from './device.js'
