// cmos-rtc: the MC146818A (device.ts, with its registers.ts and clock.ts) and its component type (rtc.ts).
export * from './clock.js'
export * from './device.js'
export * from './registers.js'
export * from './rtc.js'
