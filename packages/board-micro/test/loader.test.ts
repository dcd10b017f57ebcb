// The loader against guest memory built over plain ArrayBuffers: what goes where, and every bad
// input it must refuse before writing anything. Real kernels: Debian's cloud bzImage and vmlinux.
import { readFileSync } from 'node:fs'
import { FlatMemory, guestAddress, RamBacking } from '@vmm/core'
import { describe, expect, it } from 'vitest'
import {
  BootError,
  defaultLayout,
  type LinuxBootInput,
  loadLinux,
  PVH_MAGIC,
  parseBzImage,
  parseElf,
  writeMpTable,
} from '../src/index.js'
import { debianKernel } from './debian-kernel.js'
import { bzImageKernel, elf64Kernel, pvhKernel } from './fake-kernels.js'

function memory(size: number) {
  const mem = new FlatMemory(new RamBacking([new ArrayBuffer(size)], size))
  return { mem, ram: mem.memorySegments.map((s) => ({ start: s.start, size: s.size })) }
}

function input(
  kernelPath: string,
  over: Partial<LinuxBootInput> = {},
  size = 64 << 20,
): [FlatMemory, LinuxBootInput] {
  const { mem, ram } = memory(size)
  return [
    mem,
    {
      kernel: { name: kernelPath, bytes: readFileSync(kernelPath) },
      initrd: { name: 'initrd', bytes: new Uint8Array(8192).fill(0x42) },
      cmdline: 'console=ttyS0 quiet',
      entry: 'auto',
      layout: defaultLayout,
      ram,
      cpus: 2,
      ...over,
    },
  ]
}

const cstring = (mem: FlatMemory, at: number) => {
  let s = ''
  for (let c = mem.readU8(guestAddress(at)); c !== 0; c = mem.readU8(guestAddress(++at)))
    s += String.fromCharCode(c)
  return s
}

describe('direct boot loader', () => {
  it('fills boot_params for a 64-bit entry: setup header, command line, initrd, e820', () => {
    const [mem, inp] = input(bzImageKernel())
    const plan = loadLinux(mem, inp)
    const zp = defaultLayout.zeroPage
    const r32 = (o: number) => mem.readU32(guestAddress(zp + o))
    expect(r32(0x202)).toBe(0x53726448) // "HdrS" copied from the bzImage
    expect(mem.readU8(guestAddress(zp + 0x210))).toBe(0xff) // type_of_loader
    expect(cstring(mem, r32(0x228))).toBe('console=ttyS0 quiet')
    expect(r32(0x218)).toBe(plan.initrd!.address)
    expect(r32(0x21c)).toBe(8192)
    expect(plan.initrd!.address % 4096).toBe(0)
    expect(plan.initrd!.address + 8192).toBeLessThanOrEqual(64 << 20)
    expect(mem.readU8(guestAddress(plan.initrd!.address))).toBe(0x42)
    expect(mem.readU8(guestAddress(zp + 0x1e8))).toBe(2) // e820 entries
    const e820 = [0, 1].map((i) => [
      Number(mem.readU64(guestAddress(zp + 0x2d0 + i * 20))),
      Number(mem.readU64(guestAddress(zp + 0x2d0 + i * 20 + 8))),
      r32(0x2d0 + i * 20 + 16),
    ])
    expect(e820).toEqual([
      [0, 0x9fc00, 1],
      [0x100000, (64 << 20) - 0x100000, 1],
    ])
  })

  it('writes hvm_start_info with its module list and memory map for the PVH entry', () => {
    const [mem, inp] = input(pvhKernel())
    const plan = loadLinux(mem, inp)
    expect(plan.mode).toBe('pvh')
    const si = defaultLayout.pvhStartInfo
    expect(mem.readU32(guestAddress(si))).toBe(PVH_MAGIC)
    expect(mem.readU32(guestAddress(si + 12))).toBe(1) // nr_modules
    const modlist = Number(mem.readU64(guestAddress(si + 16)))
    expect(Number(mem.readU64(guestAddress(modlist)))).toBe(plan.initrd!.address)
    expect(Number(mem.readU64(guestAddress(modlist + 8)))).toBe(8192)
    expect(cstring(mem, Number(mem.readU64(guestAddress(si + 24))))).toBe('console=ttyS0 quiet')
    expect(mem.readU32(guestAddress(si + 48))).toBe(2)
  })

  it('hands over an ACPI RSDP address in boot_params.acpi_rsdp_addr or hvm_start_info.rsdp_paddr', () => {
    const [mem64, in64] = input(bzImageKernel(), { acpiRsdp: 0xe0000 })
    loadLinux(mem64, in64)
    expect(mem64.readU64(guestAddress(defaultLayout.zeroPage + 0x070))).toBe(0xe0000n)
    const [memPvh, inPvh] = input(pvhKernel(), { acpiRsdp: 0xe0000 })
    loadLinux(memPvh, inPvh)
    expect(memPvh.readU64(guestAddress(defaultLayout.pvhStartInfo + 32))).toBe(0xe0000n)
    // Without one, both fields stay 0 (the kernel then scans the BIOS area itself).
    const [memNone, inNone] = input(pvhKernel())
    loadLinux(memNone, inNone)
    expect(memNone.readU64(guestAddress(defaultLayout.pvhStartInfo + 32))).toBe(0n)
  })

  it('loads ELF segments at their physical addresses, zeroing .bss', () => {
    const [mem, inp] = input(elf64Kernel(), { entry: 'linux64' })
    const elf = parseElf(inp.kernel.bytes, 'k')
    const text = elf.segments.find((s) => s.physAddress === 0x1000000)!
    const plan = loadLinux(mem, inp)
    expect(plan).toMatchObject({ kind: 'elf', mode: 'linux64', entry: 0x1000000 })
    const got = new Uint8Array(text.fileSize)
    mem.read(guestAddress(0x1000000), got)
    expect(got).toEqual(
      Uint8Array.from(inp.kernel.bytes.subarray(text.fileOffset, text.fileOffset + text.fileSize)),
    )
  })

  it('writes an MP table whose floating pointer and table checksum to zero', () => {
    const { mem } = memory(1 << 20)
    writeMpTable(mem, 0x9fc00, 4)
    const sum = (at: number, n: number) => {
      let s = 0
      for (let i = 0; i < n; i++) s += mem.readU8(guestAddress(at + i))
      return s & 0xff
    }
    expect(cstring(mem, 0x9fc00).slice(0, 4)).toBe('_MP_')
    expect(sum(0x9fc00, 16)).toBe(0)
    const table = mem.readU32(guestAddress(0x9fc00 + 4))
    const len = mem.readU16(guestAddress(table + 4))
    expect(sum(table, len)).toBe(0)
    expect(mem.readU16(guestAddress(table + 34))).toBe(4 + 1 + 1 + 24 + 2) // CPUs, bus, IOAPIC, IRQs, LINTs
  })

  describe('refuses bad input before writing anything', () => {
    const untouched = (mem: FlatMemory) => {
      const buf = new Uint8Array(mem.memorySegments[0]!.size)
      mem.read(guestAddress(0), buf)
      return buf.every((b) => b === 0)
    }
    const cases: [string, () => [FlatMemory, LinuxBootInput], string, RegExp][] = [
      [
        'a file that is not a kernel',
        () =>
          input(elf64Kernel(), {
            kernel: { name: 'notes.txt', bytes: new TextEncoder().encode('hello'.repeat(200)) },
          }),
        'NOT_A_KERNEL',
        /notes\.txt: neither an ELF vmlinux nor a bzImage/,
      ],
      [
        'a PVH entry the ELF lacks',
        () => input(elf64Kernel(), { entry: 'pvh' }),
        'UNSUPPORTED_KERNEL',
        /no Xen PHYS32_ENTRY note/,
      ],
      [
        'a command line longer than the kernel takes',
        () => input(bzImageKernel(), { cmdline: 'x'.repeat(3000) }),
        'CMDLINE_TOO_LONG',
        /3000 bytes; .* accepts at most 2047/,
      ],
      [
        'an initrd that does not fit',
        () => input(bzImageKernel(), { initrd: { name: 'big.img', bytes: new Uint8Array(63 << 20) } }),
        'DOES_NOT_FIT',
        /big\.img .* does not fit/,
      ],
      [
        'too little memory for the kernel',
        () => input(elf64Kernel(), {}, 8 << 20),
        'TOO_LITTLE_MEMORY',
        /this machine does not have/,
      ],
    ]
    for (const [what, make, code, message] of cases) {
      it(what, () => {
        const [mem, inp] = make()
        let err: unknown
        try {
          loadLinux(mem, inp)
        } catch (e) {
          err = e
        }
        expect(err).toBeInstanceOf(BootError)
        expect((err as BootError).code).toBe(code)
        expect((err as Error).message).toMatch(message)
        expect(untouched(mem)).toBe(true)
      })
    }
  })
})

const debian = debianKernel()
if (typeof debian === 'string') console.warn(`[Debian kernel loader tests skipped] ${debian}`)

describe.skipIf(typeof debian === 'string')("Debian's cloud kernel", () => {
  const k = debian as Exclude<typeof debian, string>

  it('bzImage: protocol 2.15, 64-bit entry, LZ4 payload where the header says', () => {
    const bytes = readFileSync(k.bzImage)
    const bz = parseBzImage(bytes, k.bzImage)
    expect(bz.version).toBe(0x020f)
    expect(bz.has64BitEntry).toBe(true)
    expect(bz.cmdlineSize).toBe(2047)
    expect([...bz.kernel.subarray(bz.payload.offset, bz.payload.offset + 4)]).toEqual([
      0x02, 0x21, 0x4c, 0x18,
    ]) // LZ4 legacy magic
    const [mem, inp] = input(k.bzImage, {}, 256 << 20)
    const plan = loadLinux(mem, inp)
    expect(plan).toMatchObject({ kind: 'bzimage', mode: 'linux64', entry: 0x100200 })
    expect(plan.kernelEnd).toBe(0x100000 + bz.initSize)
  })

  it('a truncated bzImage is refused before loading, naming syssize (issue 13: it was a triple fault)', () => {
    const bytes = readFileSync(k.bzImage)
    const [mem, inp] = input(k.bzImage, {}, 256 << 20)
    const cut = { ...inp, kernel: { name: k.bzImage, bytes: bytes.subarray(0, bytes.length >> 1) } }
    expect(() => loadLinux(mem, cut)).toThrow(/truncated bzImage: .*\(syssize at 0x1f4\)/)
  })

  it('vmlinux: ELF with the PVH note, loaded segment by segment', () => {
    const bytes = readFileSync(k.vmlinux)
    const elf = parseElf(bytes, k.vmlinux)
    expect(elf.entry).toBe(0x1000000)
    expect(elf.pvhEntry).toBe(0x1000850)
    expect(elf.segments.length).toBeGreaterThanOrEqual(3)
    const [mem, inp] = input(k.vmlinux, {}, 256 << 20)
    const plan = loadLinux(mem, inp)
    expect(plan).toMatchObject({ kind: 'elf', mode: 'pvh', entry: 0x1000850 })
    const s = elf.segments[0]!
    expect(mem.readU32(guestAddress(s.physAddress))).toBe(
      new DataView(bytes.buffer, bytes.byteOffset).getUint32(s.fileOffset, true),
    )
  })
})
