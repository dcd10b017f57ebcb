// The standard board with a PCI host bridge, virtio-pci devices and a raw guest, as the virtio-pci
// tests build it on either hypervisor (virtio-pci.test.ts, virtio-pci.kvm.test.ts).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { register as registerMicro } from '@vmm/board-micro'
import { ComponentRegistry, type PluginRegistry, registerBuiltins } from '@vmm/core'
import { afterAll } from 'vitest'
import { register } from '../src/index.js'

export const PM_PORT = 0x600
export const LOAD = 0x10000

const dirs: string[] = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vmm-std-virtio-'))
  dirs.push(d)
  return d
}

export function registry() {
  const r = registerBuiltins(new ComponentRegistry())
  registerMicro(r as unknown as PluginRegistry)
  register(r as unknown as PluginRegistry)
  return r
}

export function manifest(image: string, devices: Record<string, unknown>, memoryModel = 'stacked') {
  return {
    machine: {
      memory: '64MiB',
      vcpus: 1,
      irqchip: true,
      memoryModel,
      layout: { mmio: { base: 0xc0000000, size: 0x3ec00000 } },
    },
    components: {
      kernel: { type: 'raw-image', file: image, address: LOAD },
      pci: {
        type: 'pci-host-bridge',
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
      ...devices,
      acpi: { type: 'acpi', pci: 'pci', serial: [], i8042: false, resources: { pm: PM_PORT, sci: 9 } },
      console: { type: 'debugcon', output: 'none', resources: { port: 0xe9 } },
    },
  }
}
