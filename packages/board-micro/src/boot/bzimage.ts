// bzImage kernels: the real-mode setup header and where the protected-mode kernel starts.
// Documentation/arch/x86/boot.rst ("The Real-Mode Kernel Header", "Details of Header Fields").
import { hex } from '@vmm/core'
import { BootError } from './errors.js'

/** Offsets in the setup header, which sits at the same place in the file and in boot_params. */
export const SetupHeader = {
  setupSects: 0x1f1,
  /** Size of the protected-mode code in 16-byte paragraphs (32 bits since protocol 2.04). */
  syssize: 0x1f4,
  bootFlag: 0x1fe,
  header: 0x202,
  version: 0x206,
  typeOfLoader: 0x210,
  loadflags: 0x211,
  code32Start: 0x214,
  ramdiskImage: 0x218,
  ramdiskSize: 0x21c,
  heapEndPtr: 0x224,
  cmdLinePtr: 0x228,
  initrdAddrMax: 0x22c,
  kernelAlignment: 0x230,
  relocatableKernel: 0x234,
  xloadflags: 0x236,
  cmdlineSize: 0x238,
  payloadOffset: 0x248,
  payloadLength: 0x24c,
  prefAddress: 0x258,
  initSize: 0x260,
  /** One past the last byte of the header: 0x202 + the byte at 0x201 (boot.rst, "jump"). */
  endByte: 0x201,
} as const

export const HDRS_MAGIC = 0x53726448 // "HdrS"
export const LOADED_HIGH = 0x01
export const CAN_USE_HEAP = 0x80
export const XLF_KERNEL_64 = 0x01

export interface BzImage {
  /** Protocol version, e.g. 0x020f. */
  readonly version: number
  /** The setup header bytes [0x1f1, end of header), to copy into boot_params. */
  readonly header: Uint8Array
  /** The protected-mode kernel (everything after the setup sectors), loaded at 1 MiB. */
  readonly kernel: Uint8Array
  /** Whether startup_64 exists at load address + 0x200 (XLF_KERNEL_64). */
  readonly has64BitEntry: boolean
  readonly initrdAddrMax: number
  readonly cmdlineSize: number
  readonly kernelAlignment: number
  readonly prefAddress: number
  /** Memory the kernel needs from its load address while decompressing (init_size). */
  readonly initSize: number
  /** The compressed payload inside `kernel` (offset and length, from 0x248/0x24c). */
  readonly payload: { readonly offset: number; readonly length: number }
}

export function isBzImage(image: Uint8Array): boolean {
  if (image.length < 0x250) return false
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength)
  return dv.getUint32(SetupHeader.header, true) === HDRS_MAGIC
}

export function parseBzImage(image: Uint8Array, name: string): BzImage {
  if (!isBzImage(image))
    throw new BootError('NOT_A_KERNEL', `${name}: no "HdrS" setup header at 0x202: not a bzImage`)
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength)
  const version = dv.getUint16(SetupHeader.version, true)
  // 2.06 added cmdline_size; 2.12 xloadflags. Anything this old predates 64-bit entry anyway.
  if (version < 0x020c)
    throw new BootError(
      'UNSUPPORTED_KERNEL',
      `${name}: boot protocol ${fmtVersion(version)} is older than 2.12`,
    )
  const loadflags = dv.getUint8(SetupHeader.loadflags)
  if ((loadflags & LOADED_HIGH) === 0)
    throw new BootError('UNSUPPORTED_KERNEL', `${name}: a zImage (not loaded high)`)
  let setupSects = dv.getUint8(SetupHeader.setupSects)
  if (setupSects === 0) setupSects = 4 // boot.rst: "if this field is 0, the real value is 4"
  // What the header promises must be in the file (a truncated bzImage otherwise loads and dies in
  // the guest as a triple fault): the setup sectors, the header itself, syssize paragraphs of
  // protected-mode code, the compressed payload inside it, and the 64-bit entry at +0x200.
  const kernelOffset = (setupSects + 1) * 512
  const short = (what: string, field: string, end: number) =>
    new BootError(
      'NOT_A_KERNEL',
      `${name}: truncated bzImage: ${what} (${field}) end at byte ${end}, but the file has ${image.length} bytes`,
    )
  if (kernelOffset >= image.length)
    throw short(
      `the ${setupSects} setup sectors`,
      `setup_sects at ${hex(SetupHeader.setupSects)}`,
      kernelOffset,
    )
  const headerEnd = 0x202 + dv.getUint8(SetupHeader.endByte)
  if (headerEnd > kernelOffset)
    throw new BootError(
      'NOT_A_KERNEL',
      `${name}: the setup header runs to ${hex(headerEnd)} (the byte at 0x201), past the setup sectors (${hex(kernelOffset)})`,
    )
  const kernelLength = image.length - kernelOffset
  const syssize = dv.getUint32(SetupHeader.syssize, true) * 16
  if (syssize > kernelLength)
    throw short(
      `the protected-mode kernel's ${syssize} bytes`,
      `syssize at ${hex(SetupHeader.syssize)}`,
      kernelOffset + syssize,
    )
  const payloadOffset = dv.getUint32(SetupHeader.payloadOffset, true)
  const payloadLength = dv.getUint32(SetupHeader.payloadLength, true)
  if (payloadLength > 0 && payloadOffset + payloadLength > kernelLength)
    throw short(
      `the compressed payload's ${payloadLength} bytes at +${hex(payloadOffset)}`,
      `payload_offset/payload_length at ${hex(SetupHeader.payloadOffset)}`,
      kernelOffset + payloadOffset + payloadLength,
    )
  const xloadflags = dv.getUint16(SetupHeader.xloadflags, true)
  if (xloadflags & XLF_KERNEL_64 && kernelLength <= 0x200)
    throw short(
      'the 64-bit entry at +0x200',
      `XLF_KERNEL_64 in xloadflags at ${hex(SetupHeader.xloadflags)}`,
      kernelOffset + 0x201,
    )
  return {
    version,
    header: image.slice(SetupHeader.setupSects, headerEnd),
    kernel: image.subarray(kernelOffset),
    has64BitEntry: (xloadflags & XLF_KERNEL_64) !== 0,
    initrdAddrMax: dv.getUint32(SetupHeader.initrdAddrMax, true),
    cmdlineSize: dv.getUint32(SetupHeader.cmdlineSize, true),
    kernelAlignment: dv.getUint32(SetupHeader.kernelAlignment, true),
    prefAddress: Number(dv.getBigUint64(SetupHeader.prefAddress, true)),
    initSize: dv.getUint32(SetupHeader.initSize, true),
    payload: { offset: payloadOffset, length: payloadLength },
  }
}

export function fmtVersion(v: number): string {
  return `${v >> 8}.${(v & 0xff).toString().padStart(2, '0')}`
}
