// The `linux` component: direct kernel boot of an ELF vmlinux (64-bit or PVH entry) or a bzImage,
// with an initrd and a command line, on a machine's vCPUs.
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import {
  type Component,
  type ComponentType,
  ConfigError,
  ContainerModule,
  checkInputFile,
  inject,
  injectable,
  type LoadContext,
  pathSchema,
  SavedState,
  Tokens,
  type VirtualMachine,
} from '@vmm/core'
import { isBzImage, parseBzImage } from './boot/bzimage.js'
import { setupX86Vcpu, vcpuCpuid } from './boot/cpu.js'
import { isElf, parseElf } from './boot/elf.js'
import { BootError } from './boot/errors.js'
import { checkInitrd } from './boot/initrd.js'
import { type BootLayout, defaultLayout } from './boot/layout.js'
import { bootVcpuState, type EntryMode, type LinuxBootPlan, loadLinux } from './boot/linux.js'

export interface LinuxConfig {
  kernel: string
  initrd?: string
  cmdline: string
  entry: EntryMode
  layout: BootLayout
  cpu: { hide: string[] }
}

/**
 * Parses the whole kernel (and initrd) at validation, so a truncated file is an error of the
 * manifest's `kernel` key, not a guest that dies as a triple fault.
 */
function kernelKind(path: string, initrd: string | undefined): 'elf' | 'bzimage' | undefined {
  const bytes = readFileSync(path)
  try {
    if (initrd) checkInitrd(readFileSync(initrd), initrd)
    if (isElf(bytes)) return parseElf(bytes, path) && 'elf'
    if (isBzImage(bytes)) return parseBzImage(bytes, path) && 'bzimage'
  } catch (e) {
    if (e instanceof BootError)
      throw new ConfigError(e.code === 'BAD_INITRD' ? 'initrd' : 'kernel', e.message)
    throw e
  }
  return undefined
}

/**
 * What other components of the board hand the kernel through the boot structures. A component
 * that references the `linux` component provides them when it is built (before any load).
 */
export interface LinuxBootInputs {
  /** The ACPI RSDP's guest physical address: boot_params.acpi_rsdp_addr or hvm_start_info.rsdp_paddr. */
  acpiRsdp?: number
}

@injectable()
export class Linux implements Component {
  /** What was loaded, once load() ran. */
  plan: LinuxBootPlan | undefined
  /** What the board's other components provide (provideBootInputs). */
  private readonly inputs: LinuxBootInputs = {}

  constructor(
    @inject(Tokens.Config) private readonly config: LinuxConfig,
    @inject(Tokens.VirtualMachine) private readonly vm: VirtualMachine,
  ) {}

  /** Adds boot inputs (e.g. the ACPI component's RSDP address); they take effect at load. */
  provideBootInputs(inputs: LinuxBootInputs): void {
    if (this.plan) throw new Error('linux: boot inputs must be provided before the kernel is loaded')
    Object.assign(this.inputs, inputs)
  }

  // Snapshottable: what the loader did is in guest RAM and the vCPU state, both in the snapshot;
  // a restored machine does not load (the kernel is already running), so `plan` stays unset there.
  quiesce(): void {}

  saveState(): Record<string, never> {
    return {}
  }

  restoreState(state: unknown): void {
    new SavedState('linux', state).only()
  }

  load({ memory, vcpus, kernelCmdline }: LoadContext): void {
    const { config } = this
    const ram = memory.ramRanges().map(({ start, size }) => ({ start, size }))
    const inflate = this.vm.bootPolicy?.prefersUncompressedInitrd ?? false
    const plan = loadLinux(memory, {
      kernel: { name: config.kernel, bytes: readFileSync(config.kernel) },
      ...(config.initrd
        ? { initrd: { name: config.initrd, bytes: initrdBytes(config.initrd, inflate) } }
        : {}),
      cmdline: withDeviceParameters(config.cmdline, kernelCmdline),
      entry: config.entry,
      layout: config.layout,
      ram,
      cpus: vcpus.length,
      ...(this.inputs.acpiRsdp !== undefined ? { acpiRsdp: this.inputs.acpiRsdp } : {}),
    })
    this.plan = plan
    // The hypervisor's CPUID policy hides what its host cannot give a guest (kvm_pvm's hypercall
    // features), and its exit filter finishes what kvm_pvm's emulator cannot (@vmm/kvm's quirks).
    const supported = this.vm.x86?.supportedCpuid()
    if (supported)
      for (const v of vcpus)
        if (v.x86) setupX86Vcpu(v.x86, vcpuCpuid(supported, v.id, vcpus.length, config.cpu.hide))
    // The boot CPU's LINT0 is open to the 8259s (setupX86Vcpu, as a BIOS leaves it); the 8259s are
    // left as a BIOS leaves them too, masked, so no ISA interrupt arrives on a CPU exception vector
    // before the kernel set up its interrupts (on the standard board's hardware-reduced ACPI Linux
    // never programs them: an interrupt in the window between its first sti and its LAPIC set-up,
    // a key pressed at reset, was #OF on vector 4). Machine.reset puts this state back (BootImage).
    this.vm.x86?.pics?.firmwareInit()
    const boot = vcpus[0]!
    const { regs, sregs } = bootVcpuState(memory, config.layout, plan, boot.getSregs())
    boot.setSregs(sregs)
    boot.setRegs(regs)
  }
}

/**
 * Where the hypervisor prefers an uncompressed initrd (kvm_pvm hosts, where inflating a 1 MiB gzip
 * initramfs in the emulated guest kernel takes minutes), the VMM inflates a gzip initrd itself (all
 * its members: concatenated archives stay concatenated); Linux takes an uncompressed cpio as well.
 * Elsewhere the file goes in as it is.
 */
function initrdBytes(path: string, inflate: boolean): Uint8Array {
  const bytes = readFileSync(path)
  const gzip = bytes[0] === 0x1f && bytes[1] === 0x8b
  return gzip && inflate ? gunzipSync(bytes) : bytes
}

/**
 * The manifest's command line plus the parameters devices announce themselves with
 * (`virtio_mmio.device=4K@0xd0000000:5`), each once: one the manifest already has is not repeated.
 */
export function withDeviceParameters(cmdline: string, parameters: readonly string[]): string {
  const words = new Set(cmdline.split(/\s+/))
  const missing = parameters.filter((p) => !words.has(p))
  return [cmdline.trim(), ...new Set(missing)].filter((w) => w !== '').join(' ')
}

const addr = { type: 'integer', minimum: 0 }

export const linuxType: ComponentType<LinuxConfig> = {
  name: 'linux',
  description: 'direct Linux boot: ELF vmlinux (64-bit or PVH entry) or bzImage, initrd and command line',
  schema: {
    properties: {
      kernel: { ...pathSchema, description: 'vmlinux (ELF) or bzImage' },
      initrd: { ...pathSchema, description: 'initramfs (cpio, possibly compressed)' },
      cmdline: {
        type: 'string',
        default: 'console=ttyS0 reboot=k panic=1',
        description: 'the kernel command line',
      },
      entry: {
        enum: ['auto', 'pvh', 'linux64'],
        default: 'auto',
        description: 'auto: PVH when the ELF has the note, else the 64-bit entry',
      },
      layout: {
        type: 'object',
        description: 'where the boot structures go (Linux boot protocol / Firecracker layout)',
        additionalProperties: false,
        default: {},
        properties: Object.fromEntries(
          Object.entries(defaultLayout).map(([k, v]) => [k, { ...addr, default: v }]),
        ),
      },
      cpu: {
        type: 'object',
        additionalProperties: false,
        default: {},
        properties: {
          hide: {
            type: 'array',
            items: { type: 'string' },
            default: [],
            description:
              'CPUID features to hide from the guest (cx16, popcnt, xsave, avx, x2apic, tsc-deadline, ...)',
          },
        },
      },
    },
    required: ['kernel'],
  },
  resources: (config, context) => {
    // A restored machine does not load its kernel: its files need not exist any more.
    if (context?.restoring) return []
    for (const key of ['kernel', 'initrd'] as const) {
      const path = config[key]
      if (!path) continue
      // examples/micro.yaml points into .guest/, which `pnpm start` fills with the default guest.
      const hint = /[/\\]\.guest[/\\]/.test(path)
        ? ' (the default guest: `pnpm start` builds it and links it there)'
        : ''
      const { size } = checkInputFile(key, `${key} file`, path, { hint })
      if (size === 0) throw new ConfigError(key, `${key} file ${path} is empty`)
    }
    if (kernelKind(config.kernel, config.initrd) === undefined)
      throw new ConfigError(
        'kernel',
        `${config.kernel} is not a kernel: neither an ELF vmlinux nor a bzImage`,
      )
    return []
  },
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).to(Linux)
  }),
}
