// vmgenid: the model (device.ts), its ACPI device (aml.ts), the ID's two forms (guid.ts) and its
// component type (vmgenid.ts).
export * from './aml.js'
export * from './device.js'
export * from './guid.js'
export * from './vmgenid.js'
