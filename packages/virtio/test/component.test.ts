// The component types through core's manifest loader and Machine, on the in-process test hypervisor.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ComponentRegistry, Machine, registerBuiltins } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { register, type VirtioMmio, vmmPluginApi } from '../src/index.js'
import { MMIO_MAGIC, MmioReg } from '../src/mmio/transport.js'
import { DeviceType } from '../src/spec.js'
import { MmioDriver } from '../src/testing/index.js'

const cleanups: (() => void | Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function machine(components: Record<string, unknown>) {
  const registry = registerBuiltins(new ComponentRegistry())
  register(registry)
  const m = await Machine.fromObject(
    {
      machine: {
        memory: '16MiB',
        vcpus: 1,
        irqchip: true,
        layout: { mmio: { base: 0xd0000000, size: 0x100000 } },
      },
      components,
    },
    { hypervisor: new TestHypervisor(), registry },
  )
  cleanups.push(() => m.dispose())
  return m
}

describe('virtio-mmio components', () => {
  it('is a vmm plugin of API version 1', () => {
    expect(vmmPluginApi).toBe(1)
  })

  it('builds devices from a few manifest lines, maps them on the MMIO bus and names the cmdline', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmm-virtio-comp-'))
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    const disk = join(dir, 'disk.img')
    writeFileSync(disk, new Uint8Array(1 << 20))
    const m = await machine({
      rng: { type: 'virtio-rng', resources: { regs: 0xd0000000, irq: 5 } },
      disk: { type: 'virtio-blk', path: disk, readOnly: true },
      balloon: { type: 'virtio-balloon', target: '1MiB' },
    })
    const rng = m.component<VirtioMmio>('rng')
    expect(rng.kernelCmdline).toBe('virtio_mmio.device=4K@0xd0000000:5')
    const word = new Uint8Array(4)
    m.mmioBus.read(0xd0000000 + MmioReg.MAGIC_VALUE, word)
    expect(new DataView(word.buffer).getUint32(0, true)).toBe(MMIO_MAGIC)
    const disk0 = m.component<VirtioMmio>('disk')
    expect(disk0.kernelCmdline).toMatch(/^virtio_mmio\.device=4K@0x[0-9a-f]+:\d+$/)
    const driver = new MmioDriver(disk0, m.memory, 0x10000)
    expect(driver.readReg(MmioReg.DEVICE_ID)).toBe(DeviceType.BLOCK)
    driver.init()
    expect(new DataView(driver.readConfig(0, 8).buffer).getBigUint64(0, true)).toBe(2048n)
    const balloon = new MmioDriver(m.component<VirtioMmio>('balloon'), m.memory)
    expect(new DataView(balloon.readConfig(0, 4).buffer).getUint32(0, true)).toBe(256)
  })

  it('blames the manifest for a missing image', async () => {
    await expect(machine({ disk: { type: 'virtio-blk', path: '/nonexistent/disk.img' } })).rejects.toThrow(
      /disk image .*: does not exist \(ENOENT\)/,
    )
  })
})
