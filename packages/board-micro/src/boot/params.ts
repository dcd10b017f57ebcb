// The information a kernel gets from its loader: boot_params (the "zero page", Linux
// Documentation/arch/x86/zero-page.rst and boot.rst) or the PVH start info (Xen public header
// arch-x86/hvm/start_info.h), each with the guest's memory map.
import { type GuestMemory, guestAddress } from '@vmm/core'
import { CAN_USE_HEAP, HDRS_MAGIC, LOADED_HIGH, SetupHeader } from './bzimage.js'
import { HIGH_MEMORY } from './layout.js'

export const E820_RAM = 1
export const E820_RESERVED = 2

export interface E820Entry {
  readonly address: number
  readonly size: number
  readonly type: number
}

/**
 * The e820 map of a guest whose RAM is `ram` (sorted, non-overlapping): RAM below the EBDA, then
 * RAM from 1 MiB on, with the legacy area [ebda, 1 MiB) left out as firmware would.
 */
export function e820Map(ram: readonly { start: number; size: number }[], ebda: number): E820Entry[] {
  const out: E820Entry[] = []
  for (const r of ram) {
    const end = r.start + r.size
    if (r.start < ebda) out.push({ address: r.start, size: Math.min(end, ebda) - r.start, type: E820_RAM })
    const hi = Math.max(r.start, HIGH_MEMORY)
    if (end > hi) out.push({ address: hi, size: end - hi, type: E820_RAM })
  }
  return out
}

// boot_params offsets (arch/x86/include/uapi/asm/bootparam.h)
/** boot_params.acpi_rsdp_addr (a u64; Linux reads it since boot protocol 2.14 / Linux 5.0). */
const ACPI_RSDP_ADDR = 0x070
const E820_ENTRIES = 0x1e8
const E820_TABLE = 0x2d0
const E820_MAX = 128
const ZERO_PAGE_SIZE = 4096

export interface ZeroPageInput {
  /** The bzImage's setup header bytes from 0x1f1, or undefined for an ELF vmlinux. */
  readonly setupHeader?: Uint8Array
  readonly cmdline: { readonly address: number; readonly size: number }
  readonly initrd?: { readonly address: number; readonly size: number }
  readonly e820: readonly E820Entry[]
  /** ACPI RSDP address, when the board has ACPI tables. */
  readonly acpiRsdp?: number
}

/** Writes boot_params at `address` (boot.rst "Details of Header Fields", 64-bit protocol). */
export function writeZeroPage(memory: GuestMemory, address: number, input: ZeroPageInput): void {
  const page = new Uint8Array(ZERO_PAGE_SIZE)
  const dv = new DataView(page.buffer)
  if (input.setupHeader)
    page.set(input.setupHeader.subarray(0, 0x290 - SetupHeader.setupSects), SetupHeader.setupSects)
  else {
    // No setup code with a vmlinux: fill what the kernel reads (boot.rst: a boot loader that does
    // not load the setup code must still provide a valid header).
    dv.setUint16(SetupHeader.bootFlag, 0xaa55, true)
    dv.setUint32(SetupHeader.header, HDRS_MAGIC, true)
    dv.setUint16(SetupHeader.version, 0x020f, true)
    dv.setUint32(SetupHeader.kernelAlignment, 0x1000000, true)
  }
  dv.setUint8(SetupHeader.typeOfLoader, 0xff) // "undefined" boot loader id
  dv.setUint8(SetupHeader.loadflags, dv.getUint8(SetupHeader.loadflags) | LOADED_HIGH | CAN_USE_HEAP)
  dv.setUint16(SetupHeader.heapEndPtr, 0xfe00, true) // boot.rst: heap_end = 0xfe00 for a modern loader
  dv.setUint32(SetupHeader.cmdLinePtr, input.cmdline.address, true)
  if (input.initrd) {
    dv.setUint32(SetupHeader.ramdiskImage, input.initrd.address, true)
    dv.setUint32(SetupHeader.ramdiskSize, input.initrd.size, true)
  }
  if (input.acpiRsdp !== undefined) dv.setBigUint64(ACPI_RSDP_ADDR, BigInt(input.acpiRsdp), true)
  if (input.e820.length > E820_MAX)
    throw new RangeError(`e820 map has ${input.e820.length} entries; at most ${E820_MAX}`)
  dv.setUint8(E820_ENTRIES, input.e820.length)
  input.e820.forEach((e, i) => {
    const p = E820_TABLE + i * 20
    dv.setBigUint64(p, BigInt(e.address), true)
    dv.setBigUint64(p + 8, BigInt(e.size), true)
    dv.setUint32(p + 16, e.type, true)
  })
  memory.write(guestAddress(address), page)
}

// struct hvm_start_info and friends (xen/include/public/arch-x86/hvm/start_info.h, version 1)
export const PVH_MAGIC = 0x336ec578
const START_INFO_SIZE = 56
const MODLIST_ENTRY_SIZE = 32
const MEMMAP_ENTRY_SIZE = 24

export interface StartInfoInput {
  readonly cmdline: number
  readonly initrd?: { readonly address: number; readonly size: number }
  readonly e820: readonly E820Entry[]
  /** ACPI RSDP address, when the board has ACPI tables. */
  readonly rsdp?: number
}

/** Writes hvm_start_info at `address`, followed by its module list and memory map; returns its size. */
export function writeStartInfo(memory: GuestMemory, address: number, input: StartInfoInput): number {
  const modlist = address + START_INFO_SIZE
  const memmap = modlist + (input.initrd ? MODLIST_ENTRY_SIZE : 0)
  const total = memmap - address + input.e820.length * MEMMAP_ENTRY_SIZE
  const buf = new Uint8Array(total)
  const dv = new DataView(buf.buffer)
  dv.setUint32(0, PVH_MAGIC, true)
  dv.setUint32(4, 1, true) // version 1: has the memory map fields
  dv.setUint32(8, 0, true) // flags
  dv.setUint32(12, input.initrd ? 1 : 0, true) // nr_modules
  dv.setBigUint64(16, input.initrd ? BigInt(modlist) : 0n, true)
  dv.setBigUint64(24, BigInt(input.cmdline), true)
  dv.setBigUint64(32, BigInt(input.rsdp ?? 0), true)
  dv.setBigUint64(40, BigInt(memmap), true)
  dv.setUint32(48, input.e820.length, true)
  if (input.initrd) {
    const p = modlist - address
    dv.setBigUint64(p, BigInt(input.initrd.address), true)
    dv.setBigUint64(p + 8, BigInt(input.initrd.size), true)
  }
  input.e820.forEach((e, i) => {
    const p = memmap - address + i * MEMMAP_ENTRY_SIZE
    dv.setBigUint64(p, BigInt(e.address), true)
    dv.setBigUint64(p + 8, BigInt(e.size), true)
    dv.setUint32(p + 16, e.type, true)
  })
  memory.write(guestAddress(address), buf)
  return total
}
