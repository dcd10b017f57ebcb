// The micro board's boot path end to end on the real /dev/kvm, with stand-in kernels that check
// what they were handed (the Linux boot itself is the concern of the Linux issue).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ComponentRegistry, Machine, type PluginRegistry, registerBuiltins } from '@vmm/core'
import { Kvm, KvmHypervisor } from '@vmm/kvm'
import { describe, expect, it } from 'vitest'
import { GUEST_PANIC_EXIT_CODE, type Linux, register } from '../src/index.js'
import {
  bzImageKernel,
  elf64Kernel,
  floodKernel,
  haltKernel,
  panicKernel,
  powerDownKernel,
  pvhKernel,
  tripleFaultKernel,
} from './fake-kernels.js'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[micro board KVM boot tests skipped] ${kvmUnavailable}`)

function registry() {
  const r = registerBuiltins(new ComponentRegistry())
  register(r as unknown as PluginRegistry)
  return r
}

async function boot(kernel: string, extra: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-micro-'))
  const initrd = join(dir, 'initrd.img')
  writeFileSync(initrd, 'INITRD42'.repeat(512))
  const console = join(dir, 'console.log')
  const hypervisor = new KvmHypervisor(Kvm.open())
  const m = await Machine.fromObject(
    {
      machine: {
        memory: '64MiB',
        vcpus: 2,
        irqchip: true,
        layout: { mmio: { base: 0xc0000000, size: 0x3ec00000 } },
      },
      components: {
        kernel: { type: 'linux', kernel, initrd, cmdline: 'console=ttyS0 hello=world', ...extra },
        serial: { type: 'serial', console: 'file', path: console, resources: { port: 0x3f8, irq: 4 } },
        i8042: { type: 'i8042', resources: { ports: 0x60, irq: 1 } },
        timer: { type: 'boot-timer', log: false, resources: { page: 0xc0000000 } },
      },
    },
    { hypervisor, registry: registry() },
  )
  try {
    const result = await m.run()
    return { result, output: readFileSync(console, 'utf8'), plan: m.component<Linux>('kernel').plan! }
  } finally {
    await m.dispose()
    hypervisor.dispose()
  }
}

describe.skipIf(kvmUnavailable)('micro board: direct boot on /dev/kvm', () => {
  it('enters an ELF vmlinux at its 64-bit entry with boot_params, command line and initrd', async () => {
    const { result, output, plan } = await boot(elf64Kernel(), { entry: 'linux64' })
    expect(plan).toMatchObject({ kind: 'elf', mode: 'linux64', entry: 0x1000000 })
    expect(output).toBe('elf64 cmdline=console=ttyS0 hello=world initrd=INITRD42\n')
    expect(result).toMatchObject({ status: 'guest-reset', code: 0, reason: expect.stringContaining('i8042') })
  })

  it('enters an ELF with the Xen note through PVH with hvm_start_info', async () => {
    const { output, plan } = await boot(pvhKernel())
    expect(plan).toMatchObject({ kind: 'elf', mode: 'pvh' })
    // Two RAM ranges: below the EBDA and from 1 MiB.
    expect(output).toBe('pvh cmdline=console=ttyS0 hello=world initrd=INITRD42 memmap=2\n')
  })

  it('loads a bzImage at 1 MiB and enters it at +0x200 in 64-bit mode', async () => {
    const { output, plan } = await boot(bzImageKernel())
    expect(plan).toMatchObject({ kind: 'bzimage', mode: 'linux64', entry: 0x100200 })
    expect(output).toBe('bzimage cmdline=console=ttyS0 hello=world initrd=INITRD42\n')
  })

  it('ends a run with a panic report with its own exit code, after the report is printed', async () => {
    const { result, output } = await boot(panicKernel(), { entry: 'linux64' })
    expect(output).toContain('CPU: 0 PID: 1')
    expect(result).toMatchObject({ status: 'guest-panic', code: GUEST_PANIC_EXIT_CODE })
    expect(result.reason).toContain('guest kernel panic: ---[ end Kernel panic - not syncing: VFS')
  })

  it('reports a triple fault as a guest failure (exit code 3, as a panic)', async () => {
    const { result } = await boot(tripleFaultKernel(), { entry: 'linux64' })
    expect(result).toMatchObject({
      status: 'failed',
      code: GUEST_PANIC_EXIT_CODE,
      reason: expect.stringContaining('triple fault'),
    })
  })

  it('loses no console output when the guest writes as fast as it can', async () => {
    const count = 50_000
    const { output } = await boot(floodKernel(count), { entry: 'linux64' })
    expect(output.length).toBe(count)
    const expected = Array.from({ length: count }, (_, i) => String.fromCharCode(0x61 + (i % 26))).join('')
    expect(output === expected).toBe(true)
  })

  it('ends the run as a power-off when Linux powers down without ACPI', async () => {
    const { result } = await boot(powerDownKernel(), { entry: 'linux64' })
    expect(result).toMatchObject({
      status: 'guest-poweroff',
      code: 0,
      reason: 'guest powered off (reboot: Power down)',
    })
  })

  it('ends the run as a power-off when Linux halts because it has no power-off method', async () => {
    const { result } = await boot(haltKernel(), { entry: 'linux64' })
    expect(result).toMatchObject({
      status: 'guest-poweroff',
      code: 0,
      reason: 'guest powered off (reboot: System halted)',
    })
  })
})
