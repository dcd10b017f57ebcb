// serial: the 16550A UART (device.ts) and its component type with the console (serial.ts).
export * from './device.js'
export * from './serial.js'
