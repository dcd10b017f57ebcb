// The x86 state a kernel entry point expects: GDT, identity page tables, segment and control
// registers. Intel SDM Vol. 3A §3.4.5 (segment descriptors), §4.5 (4-level paging), §9.8
// (switching to long mode); Linux boot.rst "64-bit Boot Protocol"; Xen's PVH ABI (hvm/start_info.h).
import type { GuestMemory, Regs, Segment, Sregs } from '@vmm/core'
import { guestAddress } from '@vmm/core'
import type { BootLayout } from './layout.js'

/** GDT selectors: the boot protocol's __BOOT_CS and __BOOT_DS, and a TSS after them. */
export const BOOT_CS = 0x10
export const BOOT_DS = 0x18
export const BOOT_TSS = 0x20

/** A segment descriptor from access/flags bits (flags in bits 12-15), base and limit (SDM Fig. 3-8). */
export function gdtEntry(flags: number, base: number, limit: number): bigint {
  const b = BigInt(base)
  const l = BigInt(limit)
  const f = BigInt(flags)
  return (
    ((b & 0xff000000n) << 32n) |
    ((b & 0x00ffffffn) << 16n) |
    (l & 0xffffn) |
    ((l & 0xf0000n) << 32n) |
    ((f & 0xf0ffn) << 40n)
  )
}

/** The KVM segment register a descriptor describes, as loaded with `selector`. */
export function segmentFromEntry(entry: bigint, selector: number): Segment {
  const base = ((entry >> 16n) & 0xffffffn) | ((entry >> 32n) & 0xff000000n)
  const limitRaw = Number((entry & 0xffffn) | ((entry >> 32n) & 0xf0000n))
  const g = Number((entry >> 55n) & 1n)
  return {
    base,
    limit: g ? limitRaw * 4096 + 4095 : limitRaw,
    selector,
    type: Number((entry >> 40n) & 0xfn),
    present: Number((entry >> 47n) & 1n),
    dpl: Number((entry >> 45n) & 3n),
    db: Number((entry >> 54n) & 1n),
    s: Number((entry >> 44n) & 1n),
    l: Number((entry >> 53n) & 1n),
    g,
    avl: Number((entry >> 52n) & 1n),
    unusable: 0,
  }
}

const CODE64 = gdtEntry(0xa09b, 0, 0xfffff) // present, code exec/read accessed, L, G
const CODE32 = gdtEntry(0xc09b, 0, 0xfffff) // present, code exec/read accessed, D, G
const DATA = gdtEntry(0xc093, 0, 0xfffff) // present, data read/write accessed, B, G
const TSS = gdtEntry(0x008b, 0, 0x67) // present, busy 32-bit TSS

/**
 * Writes the GDT (null, null, code, data, TSS) and an empty IDT, and returns `sregs` with every
 * segment register, GDTR and IDTR loaded from them (flat segments, as both entry points expect).
 */
function flatSegments(memory: GuestMemory, layout: BootLayout, code: bigint, sregs: Sregs): Sregs {
  const table = [0n, 0n, code, DATA, TSS]
  for (const [i, e] of table.entries()) memory.writeU64(guestAddress(layout.gdt + i * 8), e)
  memory.writeU64(guestAddress(layout.idt), 0n)
  const data = segmentFromEntry(DATA, BOOT_DS)
  return {
    ...sregs,
    cs: segmentFromEntry(code, BOOT_CS),
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    tr: segmentFromEntry(TSS, BOOT_TSS),
    gdt: { base: BigInt(layout.gdt), limit: table.length * 8 - 1 },
    idt: { base: BigInt(layout.idt), limit: 7 },
  }
}

/**
 * Identity-maps the first 4 GiB with 2 MiB pages: PML4 at layout.pageTables, the PDPT one page
 * later, then four page directories (SDM §4.5, Table 4-17 for the PDE with PS=1).
 */
export function writeIdentityPageTables(memory: GuestMemory, layout: BootLayout): number {
  const pml4 = layout.pageTables
  const pdpt = pml4 + 0x1000
  const pd = pdpt + 0x1000
  memory.writeU64(guestAddress(pml4), BigInt(pdpt) | 0x3n) // present | writable
  for (let g = 0; g < 4; g++) {
    memory.writeU64(guestAddress(pdpt + g * 8), BigInt(pd + g * 0x1000) | 0x3n)
    for (let i = 0; i < 512; i++) {
      const phys = (BigInt(g) << 30n) | (BigInt(i) << 21n)
      memory.writeU64(guestAddress(pd + g * 0x1000 + i * 8), phys | 0x83n) // present | writable | 2 MiB page
    }
  }
  return pml4
}

const CR0_PE = 0x1n
const CR0_PG = 0x80000000n
const CR4_PAE = 0x20n
const EFER_LME = 0x100n
const EFER_LMA = 0x400n

/** Long mode with paging on the identity map, as the 64-bit boot protocol requires. */
export function longModeSregs(memory: GuestMemory, layout: BootLayout, sregs: Sregs): Sregs {
  const flat = flatSegments(memory, layout, CODE64, sregs)
  const pml4 = writeIdentityPageTables(memory, layout)
  return {
    ...flat,
    cr0: (sregs.cr0 | CR0_PE | CR0_PG) & ~0x60000000n, // caches on (CD, NW clear)
    cr3: BigInt(pml4),
    cr4: sregs.cr4 | CR4_PAE,
    efer: sregs.efer | EFER_LME | EFER_LMA,
  }
}

/** 32-bit protected mode, paging off, flat segments: the PVH entry state (hvm/start_info.h). */
export function protectedModeSregs(memory: GuestMemory, layout: BootLayout, sregs: Sregs): Sregs {
  return {
    ...flatSegments(memory, layout, CODE32, sregs),
    cr0: (sregs.cr0 | CR0_PE) & ~(CR0_PG | 0x60000000n),
    cr4: 0n,
    efer: 0n,
  }
}

export function zeroRegs(): Regs {
  return {
    rax: 0n,
    rbx: 0n,
    rcx: 0n,
    rdx: 0n,
    rsi: 0n,
    rdi: 0n,
    rsp: 0n,
    rbp: 0n,
    r8: 0n,
    r9: 0n,
    r10: 0n,
    r11: 0n,
    r12: 0n,
    r13: 0n,
    r14: 0n,
    r15: 0n,
    rip: 0n,
    rflags: 2n, // bit 1 is reserved and always set
  }
}
