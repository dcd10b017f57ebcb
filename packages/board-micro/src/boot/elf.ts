// ELF64 kernels (vmlinux): program headers and notes, enough to load PT_LOAD segments at their
// physical addresses and find the PVH entry. System V ABI gABI ch. 4 and the x86-64 psABI.
import { hex } from '@vmm/core'
import { BootError } from './errors.js'

export interface ElfSegment {
  /** Where the segment's bytes start in the file. */
  readonly fileOffset: number
  readonly fileSize: number
  /** Bytes in memory; the part beyond fileSize is zeroed (.bss). */
  readonly memSize: number
  /** Guest physical load address (p_paddr). */
  readonly physAddress: number
}

export interface ElfKernel {
  /** e_entry: the 64-bit entry point (startup_64) as a physical address for a vmlinux. */
  readonly entry: number
  readonly segments: readonly ElfSegment[]
  /** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point, when the kernel has one (CONFIG_PVH). */
  readonly pvhEntry?: number
}

const PT_LOAD = 1
const PT_NOTE = 4
const XEN_ELFNOTE_PHYS32_ENTRY = 18

export function isElf(image: Uint8Array): boolean {
  return image.length >= 4 && image[0] === 0x7f && image[1] === 0x45 && image[2] === 0x4c && image[3] === 0x46
}

/** Parses an ELF64 x86-64 executable; `name` is used in error messages. */
export function parseElf(image: Uint8Array, name: string): ElfKernel {
  const fail = (what: string) => new BootError('NOT_A_KERNEL', `${name}: ${what}`)
  if (!isElf(image)) throw fail('not an ELF file')
  if (image.length < 64) throw fail('truncated ELF header')
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength)
  if (image[4] !== 2) throw fail('not a 64-bit ELF (EI_CLASS is not ELFCLASS64)')
  if (image[5] !== 1) throw fail('not a little-endian ELF')
  const type = dv.getUint16(16, true)
  const machine = dv.getUint16(18, true)
  if (machine !== 62)
    throw new BootError('UNSUPPORTED_KERNEL', `${name}: ELF machine ${machine} is not x86-64 (62)`)
  if (type !== 2) throw fail(`ELF type ${type} is not an executable (ET_EXEC)`)
  const entry = Number(dv.getBigUint64(24, true))
  const phoff = Number(dv.getBigUint64(32, true))
  const phentsize = dv.getUint16(54, true)
  const phnum = dv.getUint16(56, true)
  if (phentsize < 56) throw fail(`e_phentsize is ${phentsize}; an ELF64 program header is 56 bytes`)
  if (phoff + phnum * phentsize > image.length)
    throw fail(
      `truncated: ${phnum} program headers at e_phoff ${hex(phoff)} end at byte ${phoff + phnum * phentsize}, but the file has ${image.length} bytes`,
    )

  const segments: ElfSegment[] = []
  let pvhEntry: number | undefined
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize
    const ptype = dv.getUint32(p, true)
    const offset = Number(dv.getBigUint64(p + 8, true))
    const paddr = Number(dv.getBigUint64(p + 24, true))
    const filesz = Number(dv.getBigUint64(p + 32, true))
    const memsz = Number(dv.getBigUint64(p + 40, true))
    if (offset + filesz > image.length)
      throw fail(
        `truncated: segment ${i} (p_offset ${hex(offset)}, p_filesz ${filesz}) ends at byte ${offset + filesz}, but the file has ${image.length} bytes`,
      )
    if (ptype === PT_LOAD) {
      if (memsz < filesz) throw fail(`segment ${i} has p_memsz < p_filesz`)
      segments.push({ fileOffset: offset, fileSize: filesz, memSize: memsz, physAddress: paddr })
    } else if (ptype === PT_NOTE) {
      pvhEntry ??= findPvhEntry(dv, offset, filesz, (what) => fail(`PT_NOTE segment ${i}: ${what}`))
    }
  }
  if (segments.length === 0) throw fail('no loadable segments')
  return pvhEntry === undefined ? { entry, segments } : { entry, segments, pvhEntry }
}

/**
 * Walks one PT_NOTE segment for the "Xen" note of type PHYS32_ENTRY (gABI 5.6 note layout). A note
 * whose namesz/descsz run past the segment, or a PHYS32_ENTRY note too short for its address, is
 * an error: the loader would otherwise read another note's bytes as an entry point.
 */
function findPvhEntry(
  dv: DataView,
  start: number,
  size: number,
  fail: (what: string) => BootError,
): number | undefined {
  let p = start
  const end = start + size
  while (p + 12 <= end) {
    const namesz = dv.getUint32(p, true)
    const descsz = dv.getUint32(p + 4, true)
    const type = dv.getUint32(p + 8, true)
    const nameAt = p + 12
    const descAt = nameAt + align4(namesz)
    if (descAt + descsz > end)
      throw fail(
        `the note at file offset ${hex(p)} (namesz ${namesz}, descsz ${descsz}) runs past the segment's end at ${hex(end)}`,
      )
    const isXen =
      namesz === 4 &&
      dv.getUint8(nameAt) === 0x58 && // "Xen\0"
      dv.getUint8(nameAt + 1) === 0x65 &&
      dv.getUint8(nameAt + 2) === 0x6e
    if (isXen && type === XEN_ELFNOTE_PHYS32_ENTRY) {
      if (descsz < 4)
        throw fail(
          `the Xen PHYS32_ENTRY note at file offset ${hex(p)} has ${descsz} bytes; its address needs 4`,
        )
      return descsz >= 8 ? Number(dv.getBigUint64(descAt, true)) : dv.getUint32(descAt, true)
    }
    p = descAt + align4(descsz)
  }
  return undefined
}

/** Whether `address` is one of the bytes a PT_LOAD segment brings from the file. */
export function inLoadedBytes(elf: ElfKernel, address: number): boolean {
  return elf.segments.some((s) => address >= s.physAddress && address < s.physAddress + s.fileSize)
}

/**
 * Rounds up to 4 in plain arithmetic: a 32-bit namesz/descsz from the file can exceed 2^31, where
 * `(n + 3) & ~3` goes negative and walked the note reader backwards out of the file (found by
 * loaders.fuzz.test.ts: a RangeError escaped parseElf).
 */
function align4(n: number): number {
  return Math.ceil(n / 4) * 4
}
