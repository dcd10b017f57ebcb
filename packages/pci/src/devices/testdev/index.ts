// pci-testdev: the model (device.ts) and its component type (testdev.ts).
export * from './device.js'
export * from './testdev.js'
