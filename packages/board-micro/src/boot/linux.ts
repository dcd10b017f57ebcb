// Direct Linux boot: put the kernel, initrd, command line and boot information in guest memory and
// describe the vCPU state the chosen entry point expects. Three ways in, per the Linux boot
// protocol (Documentation/arch/x86/boot.rst) and Xen's PVH ABI:
//  - ELF vmlinux through its 64-bit entry (startup_64, rsi = boot_params),
//  - ELF vmlinux through the PVH entry when it has the PHYS32_ENTRY note (ebx = hvm_start_info),
//  - bzImage: the protected-mode kernel at 1 MiB, entered at its 64-bit entry (+0x200).
// Everything is checked before anything is written, so a bad input leaves memory untouched.
import { GUEST_ADDRESS_LIMIT, type GuestMemory, guestAddress, hex, type Regs, type Sregs } from '@vmm/core'
import { type BzImage, fmtVersion, isBzImage, parseBzImage } from './bzimage.js'
import { type ElfKernel, inLoadedBytes, isElf, parseElf } from './elf.js'
import { BootError } from './errors.js'
import { checkInitrd } from './initrd.js'
import type { BootLayout } from './layout.js'
import { mpTableSize, writeMpTable } from './mptable.js'
import { type E820Entry, e820Map, writeStartInfo, writeZeroPage } from './params.js'
import { longModeSregs, protectedModeSregs, zeroRegs } from './x86.js'

export type EntryMode = 'auto' | 'pvh' | 'linux64'

export interface LinuxBootInput {
  readonly kernel: { readonly name: string; readonly bytes: Uint8Array }
  readonly initrd?: { readonly name: string; readonly bytes: Uint8Array }
  readonly cmdline: string
  readonly entry: EntryMode
  readonly layout: BootLayout
  /** The guest's RAM, sorted (from the memory model). */
  readonly ram: readonly { readonly start: number; readonly size: number }[]
  readonly cpus: number
  /** Where the board's ACPI RSDP is (boot_params.acpi_rsdp_addr / hvm_start_info.rsdp_paddr). */
  readonly acpiRsdp?: number
}

export interface LinuxBootPlan {
  readonly kind: 'elf' | 'bzimage'
  readonly mode: 'pvh' | 'linux64'
  readonly entry: number
  /** Where the kernel's bytes end in guest memory (including .bss / init_size). */
  readonly kernelEnd: number
  readonly initrd?: { readonly address: number; readonly size: number }
  readonly e820: readonly E820Entry[]
  /** What was parsed, for tools and tests. */
  readonly bzImage?: BzImage
  readonly elf?: ElfKernel
}

/** The size of struct boot_params' command line buffer in Linux 6.x (COMMAND_LINE_SIZE). */
const ELF_CMDLINE_MAX = 2048
/** Without a setup header to say otherwise, keep the initrd below 2 GiB (boot.rst: initrd_addr_max default). */
const DEFAULT_INITRD_MAX = 0x7fffffff

function ramEndBelow(ram: LinuxBootInput['ram'], limit: number): number {
  let end = 0
  for (const r of ram) if (r.start < limit) end = Math.max(end, Math.min(r.start + r.size, limit))
  return end
}

function checkMapped(memory: GuestMemory, what: string, address: number, size: number): void {
  // A header can name any 64-bit address (p_paddr of a hostile ELF): one past the 52-bit physical
  // address space is as missing as a hole, not a RangeError (found by loaders.fuzz.test.ts).
  const inRange = Number.isSafeInteger(address + size) && address + size <= GUEST_ADDRESS_LIMIT
  if (!inRange || !memory.isMapped(guestAddress(address), Math.max(size, 1)))
    throw new BootError(
      'TOO_LITTLE_MEMORY',
      `${what} needs guest RAM at [${hex(address)}, ${hex(address + size)}), which this machine does not have`,
    )
}

/** Parses and checks everything, then writes the kernel, initrd, command line and boot tables. */
export function loadLinux(memory: GuestMemory, input: LinuxBootInput): LinuxBootPlan {
  const { kernel, layout } = input
  const cmdlineBytes = new TextEncoder().encode(input.cmdline)

  let plan: Omit<LinuxBootPlan, 'initrd' | 'e820'>
  let cmdlineMax: number
  let initrdMax: number
  const writes: (() => void)[] = []
  if (isElf(kernel.bytes)) {
    const elf = parseElf(kernel.bytes, kernel.name)
    let mode: 'pvh' | 'linux64' =
      input.entry === 'pvh' || (input.entry === 'auto' && elf.pvhEntry !== undefined) ? 'pvh' : 'linux64'
    if (mode === 'pvh' && elf.pvhEntry === undefined)
      throw new BootError(
        'UNSUPPORTED_KERNEL',
        `${kernel.name}: entry: pvh was asked for, but the ELF has no Xen PHYS32_ENTRY note (CONFIG_PVH)`,
      )
    if (input.entry === 'linux64') mode = 'linux64'
    // The entry the header names must be code the file brings, not .bss or a hole.
    const entry = mode === 'pvh' ? elf.pvhEntry! : elf.entry
    if (!inLoadedBytes(elf, entry))
      throw new BootError(
        'NOT_A_KERNEL',
        `${kernel.name}: the ${mode === 'pvh' ? 'PVH entry (Xen PHYS32_ENTRY note)' : '64-bit entry (e_entry)'} ${hex(entry)} is in no loaded segment's file bytes`,
      )
    let kernelEnd = 0
    for (const s of elf.segments) {
      checkMapped(memory, `${kernel.name} segment at ${hex(s.physAddress)}`, s.physAddress, s.memSize)
      kernelEnd = Math.max(kernelEnd, s.physAddress + s.memSize)
      writes.push(() => {
        memory.write(
          guestAddress(s.physAddress),
          kernel.bytes.subarray(s.fileOffset, s.fileOffset + s.fileSize),
        )
        if (s.memSize > s.fileSize)
          memory.write(guestAddress(s.physAddress + s.fileSize), new Uint8Array(s.memSize - s.fileSize))
      })
    }
    plan = { kind: 'elf', mode, entry, kernelEnd, elf }
    cmdlineMax = ELF_CMDLINE_MAX
    initrdMax = DEFAULT_INITRD_MAX
  } else if (isBzImage(kernel.bytes)) {
    const bz = parseBzImage(kernel.bytes, kernel.name)
    if (input.entry === 'pvh')
      throw new BootError(
        'UNSUPPORTED_KERNEL',
        `${kernel.name}: a bzImage has no PVH entry; use the ELF vmlinux, or entry: linux64`,
      )
    if (!bz.has64BitEntry)
      throw new BootError(
        'UNSUPPORTED_KERNEL',
        `${kernel.name}: boot protocol ${fmtVersion(bz.version)} kernel has no 64-bit entry (XLF_KERNEL_64)`,
      )
    const kernelEnd = layout.kernel + Math.max(bz.kernel.length, bz.initSize)
    checkMapped(
      memory,
      `${kernel.name} (protected-mode kernel and its init_size)`,
      layout.kernel,
      kernelEnd - layout.kernel,
    )
    writes.push(() => memory.write(guestAddress(layout.kernel), bz.kernel))
    plan = { kind: 'bzimage', mode: 'linux64', entry: layout.kernel + 0x200, kernelEnd, bzImage: bz }
    cmdlineMax = bz.cmdlineSize + 1
    initrdMax = bz.initrdAddrMax || DEFAULT_INITRD_MAX
  } else {
    throw new BootError(
      'NOT_A_KERNEL',
      `${kernel.name}: neither an ELF vmlinux nor a bzImage (no ELF magic, no "HdrS" at 0x202)`,
    )
  }

  if (cmdlineBytes.length + 1 > cmdlineMax)
    throw new BootError(
      'CMDLINE_TOO_LONG',
      `the kernel command line is ${cmdlineBytes.length} bytes; ${kernel.name} accepts at most ${cmdlineMax - 1}`,
    )
  checkMapped(memory, 'the command line', layout.cmdline, cmdlineMax)
  for (const [what, at, size] of [
    ['the GDT', layout.gdt, 40],
    ['the zero page', layout.zeroPage, 4096],
    ['the PVH start info', layout.pvhStartInfo, 4096],
    ['the page tables', layout.pageTables, 6 * 4096],
    ['the MP table', layout.ebda, mpTableSize(input.cpus)],
  ] as const) {
    checkMapped(memory, what, at, size)
  }

  let initrd: { address: number; size: number } | undefined
  if (input.initrd) {
    checkInitrd(input.initrd.bytes, input.initrd.name)
    const size = input.initrd.bytes.length
    const top = Math.min(ramEndBelow(input.ram, 2 ** 32), initrdMax + 1)
    const address = Math.floor((top - size) / 4096) * 4096
    if (address < plan.kernelEnd)
      throw new BootError(
        'DOES_NOT_FIT',
        `${input.initrd.name} (${size} bytes) does not fit between the kernel's end (${hex(plan.kernelEnd)}) and ${hex(top)}; give the machine more memory`,
      )
    initrd = { address, size }
    const bytes = input.initrd.bytes
    writes.push(() => memory.write(guestAddress(address), bytes))
  }

  // Checked; now write.
  for (const w of writes) w()
  memory.write(guestAddress(layout.cmdline), Uint8Array.from([...cmdlineBytes, 0]))
  const e820 = e820Map(input.ram, layout.ebda)
  writeMpTable(memory, layout.ebda, input.cpus)
  if (plan.mode === 'pvh') {
    writeStartInfo(memory, layout.pvhStartInfo, {
      cmdline: layout.cmdline,
      e820,
      ...(initrd ? { initrd } : {}),
      ...(input.acpiRsdp !== undefined ? { rsdp: input.acpiRsdp } : {}),
    })
  } else {
    writeZeroPage(memory, layout.zeroPage, {
      ...(plan.bzImage ? { setupHeader: plan.bzImage.header } : {}),
      cmdline: { address: layout.cmdline, size: cmdlineBytes.length },
      e820,
      ...(initrd ? { initrd } : {}),
      ...(input.acpiRsdp !== undefined ? { acpiRsdp: input.acpiRsdp } : {}),
    })
  }
  return { ...plan, e820, ...(initrd ? { initrd } : {}) }
}

/** The boot vCPU's registers for `plan` (the others wait for INIT/SIPI from it). */
export function bootVcpuState(
  memory: GuestMemory,
  layout: BootLayout,
  plan: LinuxBootPlan,
  sregs: Sregs,
): { regs: Regs; sregs: Sregs } {
  const regs = zeroRegs()
  regs.rip = BigInt(plan.entry)
  regs.rsp = BigInt(layout.stack)
  regs.rbp = BigInt(layout.stack)
  if (plan.mode === 'pvh') {
    regs.rbx = BigInt(layout.pvhStartInfo) // PVH ABI: ebx = physical address of hvm_start_info
    return { regs, sregs: protectedModeSregs(memory, layout, sregs) }
  }
  regs.rsi = BigInt(layout.zeroPage) // 64-bit protocol: rsi = boot_params
  return { regs, sregs: longModeSregs(memory, layout, sregs) }
}
