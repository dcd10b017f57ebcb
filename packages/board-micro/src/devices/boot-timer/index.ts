// boot-timer: the model (device.ts) and its component type (boot-timer.ts).
export * from './boot-timer.js'
export * from './device.js'
