// The PVH-note and bzImage-header checks, on files built byte by byte.
import { describe, expect, it } from 'vitest'
import { bzImageProtocol, pvhEntry } from '../src/verify.js'

/** A minimal ELF64 x86-64 file with one PT_NOTE segment holding `notes`. */
function elfWithNotes(notes: { name: string; type: number; desc: Buffer }[]): Buffer {
  const noteBytes = Buffer.concat(
    notes.map(({ name, type, desc }) => {
      const n = Buffer.from(`${name}\0`, 'latin1')
      const h = Buffer.alloc(12)
      h.writeUInt32LE(n.length, 0)
      h.writeUInt32LE(desc.length, 4)
      h.writeUInt32LE(type, 8)
      const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)])
      return Buffer.concat([h, pad(n), pad(desc)])
    }),
  )
  const ehdr = Buffer.alloc(64)
  ehdr.writeUInt32BE(0x7f454c46, 0)
  ehdr[4] = 2 // ELFCLASS64
  ehdr[5] = 1 // little endian
  ehdr.writeUInt16LE(62, 18) // EM_X86_64
  ehdr.writeBigUInt64LE(64n, 0x20) // e_phoff
  ehdr.writeUInt16LE(56, 0x36) // e_phentsize
  ehdr.writeUInt16LE(2, 0x38) // e_phnum
  const load = Buffer.alloc(56)
  load.writeUInt32LE(1, 0) // PT_LOAD, skipped
  const note = Buffer.alloc(56)
  note.writeUInt32LE(4, 0) // PT_NOTE
  note.writeBigUInt64LE(64n + 112n, 8)
  note.writeBigUInt64LE(BigInt(noteBytes.length), 32)
  return Buffer.concat([ehdr, load, note, noteBytes])
}

const u64 = (v: bigint) => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(v)
  return b
}

describe('pvhEntry', () => {
  it('finds the Xen PHYS32_ENTRY note after other notes', () => {
    const elf = elfWithNotes([
      { name: 'GNU', type: 3, desc: Buffer.from('build-id-bytes') },
      { name: 'Xen', type: 17, desc: u64(5n) },
      { name: 'Xen', type: 18, desc: u64(0x1000370n) },
    ])
    expect(pvhEntry(elf)).toBe(0x1000370n)
  })

  it('reads a 4-byte entry too', () => {
    const d = Buffer.alloc(4)
    d.writeUInt32LE(0x1234)
    expect(pvhEntry(elfWithNotes([{ name: 'Xen', type: 18, desc: d }]))).toBe(0x1234n)
  })

  it('says when the kernel has no PVH entry, or is no x86-64 ELF', () => {
    expect(() => pvhEntry(elfWithNotes([{ name: 'GNU', type: 18, desc: u64(1n) }]))).toThrow(/CONFIG_PVH/)
    expect(() => pvhEntry(Buffer.alloc(100))).toThrow(/not an ELF/)
    const elf = elfWithNotes([])
    elf.writeUInt16LE(183, 18) // EM_AARCH64
    expect(() => pvhEntry(elf)).toThrow(/not a 64-bit x86 ELF/)
  })
})

describe('bzImageProtocol', () => {
  it('reads the boot protocol version of a setup header', () => {
    const b = Buffer.alloc(0x300)
    b.writeUInt16LE(0xaa55, 0x1fe)
    b.write('HdrS', 0x202, 'latin1')
    b.writeUInt16LE(0x020f, 0x206)
    expect(bzImageProtocol(b)).toBe(0x020f)
    b.write('HdrX', 0x202, 'latin1')
    expect(() => bzImageProtocol(b)).toThrow(/not a bzImage/)
  })
})
