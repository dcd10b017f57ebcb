// i8042: the controller (device.ts) and its component type (i8042.ts).
export * from './device.js'
export * from './i8042.js'
