// Where the boot structures go in guest memory. The defaults follow the Linux boot protocol
// (Documentation/arch/x86/boot.rst) and Firecracker's published layout (arch/x86_64/layout.rs);
// a board manifest may move any of them.

export interface BootLayout {
  /** GDT (boot.rst 64-bit protocol: __BOOT_CS = 0x10, __BOOT_DS = 0x18). */
  gdt: number
  /** An empty IDT: the kernel installs its own before enabling interrupts. */
  idt: number
  /** PVH start info (struct hvm_start_info) and, after it, its memory map and module list. */
  pvhStartInfo: number
  /** boot_params, the "zero page". */
  zeroPage: number
  /** Initial stack pointer. */
  stack: number
  /** PML4; the PDPT and four page directories follow it page by page (identity map of 4 GiB). */
  pageTables: number
  /** Kernel command line, NUL-terminated. */
  cmdline: number
  /** Where the EBDA starts: low RAM ends here in the e820 map, and the MP table goes here. */
  ebda: number
  /** bzImage protected-mode kernel load address (the protocol's 1 MiB). */
  kernel: number
}

export const defaultLayout: BootLayout = {
  gdt: 0x500,
  idt: 0x520,
  pvhStartInfo: 0x6000,
  zeroPage: 0x7000,
  stack: 0x8ff0,
  pageTables: 0x9000,
  cmdline: 0x20000,
  ebda: 0x9fc00,
  kernel: 0x100000,
}

/** Start of RAM above the legacy video/BIOS area (boot.rst: "HIMEM_START"). */
export const HIGH_MEMORY = 0x100000
