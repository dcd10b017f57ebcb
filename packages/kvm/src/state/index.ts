// vCPU and VM state as KVM exchanges it: the codec (one DataView layout table per struct) and the
// layouts of every struct, documented with their C declarations.
export { array, bytes, decode, encode, type Fields, type Layout, struct, u8, u16, u32, u64 } from './codec.js'
export * from './layouts.js'
