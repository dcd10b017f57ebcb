// Checks that a built kernel is bootable the ways the micro board boots it: the ELF vmlinux
// through the PVH entry, and the bzImage through the Linux x86 boot protocol.
import { readFileSync } from 'node:fs'

const PT_NOTE = 4
/** xen/include/public/elfnote.h: the 32-bit physical entry point of a PVH kernel. */
const XEN_ELFNOTE_PHYS32_ENTRY = 18

/**
 * The PVH entry address from the vmlinux ELF notes (name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY;
 * arch/x86/platform/pvh/head.S emits it when CONFIG_PVH is set). Throws when the file is not an
 * x86-64 ELF or has no such note.
 */
export function pvhEntry(vmlinux: Uint8Array, name = 'vmlinux'): bigint {
  const b = Buffer.from(vmlinux.buffer, vmlinux.byteOffset, vmlinux.byteLength)
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${name} is not an ELF file`)
  // e_ident[EI_CLASS] = ELFCLASS64, e_ident[EI_DATA] = ELFDATA2LSB, e_machine = EM_X86_64 (62).
  if (b[4] !== 2 || b[5] !== 1 || b.readUInt16LE(18) !== 62)
    throw new Error(`${name} is not a 64-bit x86 ELF`)
  const phoff = Number(b.readBigUInt64LE(0x20))
  const phentsize = b.readUInt16LE(0x36)
  const phnum = b.readUInt16LE(0x38)
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize
    if (b.readUInt32LE(ph) !== PT_NOTE) continue
    const start = Number(b.readBigUInt64LE(ph + 8))
    const end = start + Number(b.readBigUInt64LE(ph + 32))
    // Elf64_Nhdr: namesz, descsz, type (4 bytes each), then name and desc, each 4-byte aligned.
    for (let off = start; off + 12 <= end; ) {
      const namesz = b.readUInt32LE(off)
      const descsz = b.readUInt32LE(off + 4)
      const type = b.readUInt32LE(off + 8)
      const nameAt = off + 12
      const descAt = nameAt + ((namesz + 3) & ~3)
      if (type === XEN_ELFNOTE_PHYS32_ENTRY && b.toString('latin1', nameAt, nameAt + namesz) === 'Xen\0') {
        if (descsz === 8) return b.readBigUInt64LE(descAt)
        if (descsz === 4) return BigInt(b.readUInt32LE(descAt))
      }
      off = descAt + ((descsz + 3) & ~3)
    }
  }
  throw new Error(`${name} has no Xen PHYS32_ENTRY note: the kernel was built without CONFIG_PVH`)
}

/**
 * The boot protocol version of a bzImage (Documentation/x86/boot.rst: boot_flag 0xAA55 at
 * 0x1FE, header magic "HdrS" at 0x202, version at 0x206). Throws when the file is not one.
 */
export function bzImageProtocol(bzImage: Uint8Array, name = 'bzImage'): number {
  const b = Buffer.from(bzImage.buffer, bzImage.byteOffset, bzImage.byteLength)
  if (b.length < 0x268 || b.readUInt16LE(0x1fe) !== 0xaa55 || b.toString('latin1', 0x202, 0x206) !== 'HdrS')
    throw new Error(`${name} is not a bzImage (no boot_flag 0xAA55 and "HdrS" in its setup header)`)
  return b.readUInt16LE(0x206)
}

/** Both checks on the files of a finished build. */
export function verifyKernelFiles(
  vmlinuxPath: string,
  bzImagePath: string,
): { pvhEntry: bigint; protocol: number } {
  return {
    pvhEntry: pvhEntry(readFileSync(vmlinuxPath), vmlinuxPath),
    protocol: bzImageProtocol(readFileSync(bzImagePath), bzImagePath),
  }
}
