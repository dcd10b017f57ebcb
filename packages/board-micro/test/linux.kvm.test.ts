// A real Linux kernel on the micro board on /dev/kvm, as far as this host lets it go: Debian's
// cloud kernel through the PVH entry must print its banner, our command line and our e820 map on
// the 8250, and detect KVM. (Reaching /init on kvm_pvm hosts is the Linux issue's business.)
// On our kvm_pvm machines the kernel's code runs through KVM's instruction emulator: getting this
// far takes about 20 s of wall time.
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ComponentRegistry, Machine, type PluginRegistry, registerBuiltins } from '@vmm/core'
import { Kvm, KvmHypervisor } from '@vmm/kvm'
import { describe, expect, it } from 'vitest'
import { register } from '../src/index.js'
import { debianKernel } from './debian-kernel.js'

const kvmUnavailable = Kvm.unavailableReason()
const debian = debianKernel()
const skip = kvmUnavailable ?? (typeof debian === 'string' ? debian : undefined)
if (skip) console.warn(`[Linux early-boot test skipped] ${skip}`)

describe.skipIf(skip)('Linux on the micro board (real /dev/kvm)', () => {
  it("boots Debian's kernel through PVH far enough to print its early messages on the serial port", async () => {
    const k = debian as Exclude<typeof debian, string>
    const log = join(mkdtempSync(join(tmpdir(), 'vmm-linux-')), 'console.log')
    const registry = registerBuiltins(new ComponentRegistry())
    register(registry as unknown as PluginRegistry)
    const hypervisor = new KvmHypervisor(Kvm.open())
    const m = await Machine.fromObject(
      {
        machine: {
          memory: '256MiB',
          irqchip: true,
          layout: { mmio: { base: 0xc0000000, size: 0x3ec00000 } },
        },
        components: {
          kernel: {
            type: 'linux',
            kernel: k.vmlinux,
            cmdline: 'console=ttyS0 earlyprintk=serial,ttyS0 noxsave clearcpuid=cx16,popcnt reboot=k panic=1',
          },
          serial: { type: 'serial', console: 'file', path: log, resources: { port: 0x3f8, irq: 4 } },
          i8042: { type: 'i8042', resources: { ports: 0x60, irq: 1 } },
        },
      },
      { hypervisor, registry },
    )
    const output = () => {
      try {
        return readFileSync(log, 'utf8')
      } catch {
        return ''
      }
    }
    try {
      const run = m.run()
      const deadline = Date.now() + 60_000
      while (!output().includes('Hypervisor detected: KVM') && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100))
      }
      await m.stop()
      await run
    } finally {
      await m.dispose()
      hypervisor.dispose()
    }
    const out = output()
    expect(out).toContain('Linux version 6.1')
    expect(out).toContain('Command line: console=ttyS0 earlyprintk=serial,ttyS0')
    expect(out).toMatch(/BIOS-e820: \[mem 0x0000000000000000-0x000000000009fbff\] usable/)
    expect(out).toMatch(/BIOS-e820: \[mem 0x0000000000100000-0x000000000fffffff\] usable/)
    expect(out).toContain('Hypervisor detected: KVM')
  }, 90_000)
})
