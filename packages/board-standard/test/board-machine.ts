// The standard board with the PCI test device, as the board tests build it on either hypervisor
// (board.test.ts, board.kvm.test.ts).
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { register as registerMicro } from '@vmm/board-micro'
import { ComponentRegistry, Machine, type PluginRegistry, registerBuiltins } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { TESTDEV_DEVICE, TESTDEV_VENDOR } from '@vmm/pci'
import { register } from '../src/index.js'
import { pciProbeKernel } from './guest.js'

export const PM_PORT = 0x600

export function registry() {
  const r = registerBuiltins(new ComponentRegistry())
  registerMicro(r as unknown as PluginRegistry)
  register(r as unknown as PluginRegistry)
  return r
}

export function manifest(kernel: string, memoryModel: 'stacked' | 'flat' = 'stacked', raw?: string) {
  const boot = raw
    ? { type: 'raw-image', file: raw, address: 0x10000 }
    : { type: 'linux', kernel, cmdline: 'console=ttyS0', entry: 'linux64' }
  return {
    machine: {
      memory: '64MiB',
      vcpus: 2,
      irqchip: true,
      memoryModel,
      layout: { mmio: { base: 0xc0000000, size: 0x3ec00000 } },
    },
    components: {
      kernel: boot,
      serial: { type: 'serial', console: 'none', resources: { port: 0x3f8, irq: 4 } },
      pci: {
        type: 'pci-host-bridge',
        buses: 1,
        resources: {
          config: 0xcf8,
          ecam: 0xe0000000,
          mmio32: 0xc0000000,
          inta: 16,
          intb: 17,
          intc: 18,
          intd: 19,
        },
      },
      testdev: { type: 'pci-testdev', bus: 'pci' },
      acpi: {
        type: 'acpi',
        pci: 'pci',
        serial: ['serial'],
        ...(raw ? {} : { kernel: 'kernel' }),
        i8042: false,
        resources: { pm: PM_PORT, sci: 9 },
      },
      console: { type: 'debugcon', output: 'none', resources: { port: 0xe9 } },
    },
  }
}

export const kernel = () => pciProbeKernel(((TESTDEV_DEVICE << 16) | TESTDEV_VENDOR) >>> 0, PM_PORT)

/** The standard board on the test hypervisor, loaded and started with a guest that spins (jmp $). */
export async function runningBoard(acpi: Record<string, unknown> = {}) {
  const hv = new TestHypervisor()
  const dir = mkdtempSync(join(tmpdir(), 'vmm-std-'))
  writeFileSync(join(dir, 'spin.bin'), Uint8Array.of(0xeb, 0xfe))
  const base = manifest('', 'stacked', join(dir, 'spin.bin'))
  const m = await Machine.fromObject(
    { ...base, components: { ...base.components, acpi: { ...base.components.acpi, ...acpi } } },
    { hypervisor: hv, registry: registry() },
  )
  await m.load()
  await m.start()
  return { m, hv, dir }
}
