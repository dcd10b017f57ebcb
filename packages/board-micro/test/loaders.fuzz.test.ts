// Hostile kernels and initrds for the direct-boot loader (issue 13, item 5 and the fuzz figures):
// every file a user hands the linux component, cut short or with random bytes overwritten. The
// properties: nothing but a BootError escapes, nothing is written to guest memory when it is
// refused, and a file cut before the end of what its headers promise is always refused, naming
// what is missing (Documentation/arch/x86/boot.rst; gABI ch. 5 program headers and notes;
// buffer-format.rst for the initramfs).
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { FlatMemory, type GuestMemory, RamBacking } from '@vmm/core'
import { fuzz } from '@vmm/core/testing'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  BootError,
  checkInitrd,
  defaultLayout,
  type LinuxBootInput,
  loadLinux,
  parseBzImage,
  parseElf,
} from '../src/index.js'
import { newc } from './cpio.js'
import { bzImageKernel, elf64Kernel, pvhKernel } from './fake-kernels.js'

const SIZE = 24 << 20
const backing = new FlatMemory(new RamBacking([new ArrayBuffer(SIZE)], SIZE))
const ram = backing.memorySegments.map((s) => ({ start: s.start, size: s.size }))
/** Guest memory that counts writes: a refused input must leave it untouched. */
let writes = 0
const memory = new Proxy(backing, {
  get(target, key, receiver) {
    const v = Reflect.get(target, key, receiver)
    if (typeof v !== 'function') return v
    return (...args: unknown[]) => {
      if (typeof key === 'string' && key.startsWith('write')) writes++
      return v.apply(target, args)
    }
  },
}) as GuestMemory

const bz = readFileSync(bzImageKernel())
const elf = readFileSync(elf64Kernel())
const pvh = readFileSync(pvhKernel())
const cpio = newc([
  ['init', new Uint8Array(3000).fill(0x41)],
  ['etc/motd', new TextEncoder().encode('hello')],
])
const gz = gzipSync(cpio)

function load(kernel: Uint8Array, initrd?: Uint8Array): 'loaded' | BootError {
  writes = 0
  const input: LinuxBootInput = {
    kernel: { name: 'k.img', bytes: kernel },
    ...(initrd ? { initrd: { name: 'i.img', bytes: initrd } } : {}),
    cmdline: 'console=ttyS0',
    entry: 'auto',
    layout: defaultLayout,
    ram,
    cpus: 1,
  }
  try {
    loadLinux(memory, input)
    return 'loaded'
  } catch (e) {
    expect(e).toBeInstanceOf(BootError) // nothing else escapes: no RangeError, no GuestMemoryError
    expect(writes).toBe(0)
    return e as BootError
  }
}

/** The file with `edits` random bytes overwritten (offsets biased to the headers) and maybe cut. */
const mutated = (file: Uint8Array) =>
  fc
    .record({
      edits: fc.array(
        fc.record({
          at: fc.oneof(fc.integer({ min: 0, max: 0x300 }), fc.integer({ min: 0, max: file.length - 1 })),
          byte: fc.integer({ min: 0, max: 255 }),
        }),
        { maxLength: 8 },
      ),
      cut: fc.option(fc.integer({ min: 0, max: file.length }), { nil: undefined }),
    })
    .map(({ edits, cut }) => {
      const b = Uint8Array.from(file.subarray(0, cut ?? file.length))
      for (const { at, byte } of edits) if (at < b.length) b[at] = byte
      return b
    })

/** Where the bytes an ELF's program headers point to end. */
function elfEnd(b: Uint8Array): number {
  const dv = new DataView(b.buffer, b.byteOffset)
  const phoff = Number(dv.getBigUint64(32, true))
  const phnum = dv.getUint16(56, true)
  let end = phoff + 56 * phnum
  for (let i = 0; i < phnum; i++) {
    const p = phoff + 56 * i
    end = Math.max(end, Number(dv.getBigUint64(p + 8, true) + dv.getBigUint64(p + 32, true)))
  }
  return end
}

describe('loaders: what the headers promise is in the file (regressions)', () => {
  it('a truncated bzImage is refused at parse time, naming syssize', async () => {
    expect(() => parseBzImage(bz.subarray(0, bz.length - 100), 'bz')).toThrow(
      /bz: truncated bzImage: the protected-mode kernel's \d+ bytes \(syssize at 0x1f4\) end at byte \d+, but the file has \d+ bytes/,
    )
    const e = load(bz.subarray(0, 1024 + 300))
    expect(e).toBeInstanceOf(BootError)
    expect((e as BootError).code).toBe('NOT_A_KERNEL')
  })

  it('a bzImage whose payload runs past its kernel is refused, naming payload_offset', async () => {
    const b = Uint8Array.from(bz)
    new DataView(b.buffer).setUint32(0x248, 0x100, true)
    new DataView(b.buffer).setUint32(0x24c, b.length, true)
    expect(() => parseBzImage(b, 'bz')).toThrow(/payload_offset\/payload_length at 0x248/)
  })

  it('a truncated ELF names the segment and the offset', async () => {
    expect(() => parseElf(elf.subarray(0, elfEnd(elf) - 20), 'vmlinux')).toThrow(
      /vmlinux: truncated: segment \d \(p_offset 0x[0-9a-f]+, p_filesz \d+\) ends at byte \d+, but the file has \d+ bytes/,
    )
  })

  it('a segment at a physical address past 2^52 is TOO_LITTLE_MEMORY, not a RangeError (found by the fuzzer)', async () => {
    const b = Uint8Array.from(elf)
    const dv = new DataView(b.buffer)
    dv.setBigUint64(Number(dv.getBigUint64(32, true)) + 24, 1n << 60n, true) // p_paddr of segment 0
    expect(load(b)).toMatchObject({ code: 'TOO_LITTLE_MEMORY' })
  })

  it('a note whose namesz is past 2^31 is refused, not read backwards (found by the fuzzer)', async () => {
    const b = Uint8Array.from(pvh)
    const at = b.findIndex(
      (_, i) => b[i] === 0x58 && b[i + 1] === 0x65 && b[i + 2] === 0x6e && b[i + 3] === 0,
    )
    new DataView(b.buffer).setUint32(at - 12, 0x80000004, true) // namesz of the Xen note
    expect(() => parseElf(b, 'pvh')).toThrow(/PT_NOTE segment \d+: the note at file offset .* runs past/)
  })

  it('a PVH note that runs past its segment is refused; so is an entry outside the loaded bytes', async () => {
    const b = Uint8Array.from(pvh)
    const at = b.findIndex(
      (_, i) => b[i] === 0x58 && b[i + 1] === 0x65 && b[i + 2] === 0x6e && b[i + 3] === 0,
    )
    new DataView(b.buffer).setUint32(at - 8, 0x10000, true) // descsz of the Xen note
    expect(() => parseElf(b, 'pvh')).toThrow(
      /PT_NOTE segment \d+: the note at file offset 0x[0-9a-f]+ .* runs past/,
    )
    const c = Uint8Array.from(pvh)
    new DataView(c.buffer).setUint32(at + 4, 0x2000000, true) // the entry address
    expect(load(c)).toMatchObject({ message: /PVH entry .* 0x2000000 is in no loaded segment/ })
  })

  it('a truncated initrd (cpio or gzip) is refused, naming the entry and c_filesize', async () => {
    expect(() => checkInitrd(cpio.subarray(0, 2000), 'i.img')).toThrow(
      /i.img: truncated cpio archive: "init" at offset 0 promises 3000 bytes \(c_filesize\)/,
    )
    expect(() => checkInitrd(cpio.subarray(0, cpio.length - 20), 'i.img')).toThrow(/TRAILER|entry header/)
    expect(() => checkInitrd(gz.subarray(0, gz.length - 10), 'i.img')).toThrow(
      /gzip archive at offset 0 does not inflate/,
    )
    expect(() => checkInitrd(Uint8Array.from([...cpio, 0, 0, 0, 0, ...gz]), 'i.img')).not.toThrow()
    expect(() => checkInitrd(new Uint8Array(4096).fill(7), 'ramdisk.img')).not.toThrow() // old-style ramdisk
  })
})

describe('loaders under hostile files (fast-check)', () => {
  for (const [what, file, promised] of [
    ['bzImage', bz, bz.length],
    ['ELF vmlinux', elf, elfEnd(elf)],
    ['PVH ELF', pvh, elfEnd(pvh)],
  ] as const) {
    it(`${what}: mutated or cut, only a BootError escapes and a refusal writes nothing`, async () => {
      await fuzz(
        (p) =>
          fc.assert(
            fc.property(mutated(file), (k) => {
              load(k)
            }),
            p,
          ),
        200,
      )
    })

    it(`${what}: cut before the end of its loaded bytes, always refused`, async () => {
      await fuzz(
        (p) =>
          fc.assert(
            fc.property(fc.integer({ min: 0, max: promised - 1 }), (cut) => {
              expect(load(file.subarray(0, cut))).toBeInstanceOf(BootError)
            }),
            p,
          ),
        200,
      )
    })
  }

  it('initrd (cpio and gzip): mutated or cut, only a BootError escapes; cut cpio always refused', async () => {
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(fc.oneof(mutated(cpio), mutated(gz)), (i) => {
            load(elf, i)
          }),
          p,
        ),
      200,
    )
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(fc.integer({ min: 6, max: cpio.length - 1 }), (cut) => {
            expect(() => checkInitrd(cpio.subarray(0, cut), 'i.img')).toThrow(BootError)
          }),
          p,
        ),
      200,
    )
  })
})
