import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ComponentRegistry, loadPlugin, Machine, type MachineControl, registerBuiltins } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { describe, expect, it } from 'vitest'
import { DebugExit, debugExitType } from '../src/index.js'

function control() {
  const stops: [string, number][] = []
  const machine: MachineControl = {
    guestStopped: () => {},
    requestStop: (reason, code) => void stops.push([reason, code]),
    report: () => {},
  }
  return { machine, stops }
}

describe('DebugExit', () => {
  it('maps a written value to an exit code the way QEMU does', () => {
    const { machine, stops } = control()
    const dev = new DebugExit({ mode: 'qemu' }, machine)
    dev.write(0, Uint8Array.of(0))
    dev.write(0, Uint8Array.of(0x10))
    expect(stops).toEqual([
      ['guest wrote 0 to debug-exit', 1],
      ['guest wrote 16 to debug-exit', 33],
    ])
  })

  it('passes the value through in direct mode, little-endian and truncated to 8 bits', () => {
    const { machine, stops } = control()
    const dev = new DebugExit({ mode: 'direct' }, machine)
    dev.write(0, Uint8Array.of(0x02, 0x01))
    expect(stops).toEqual([['guest wrote 258 to debug-exit', 2]])
  })

  it('reads as all-ones', () => {
    const data = new Uint8Array(2)
    new DebugExit({ mode: 'qemu' }, control().machine).read(0, data)
    expect([...data]).toEqual([0xff, 0xff])
  })
})

describe('the plugin', () => {
  it('loads through the plugin loader and ends a machine with the guest code', async () => {
    const registry = registerBuiltins(new ComponentRegistry())
    // Resolved by name from this package, as a manifest beside it would.
    await loadPlugin('vmm-plugin-debug-exit', fileURLToPath(import.meta.url), registry)
    expect(registry.origin('debug-exit')).toBe('vmm-plugin-debug-exit')
    expect(registry.get('debug-exit')?.description).toBe(debugExitType.description)
    const guest = join(mkdtempSync(join(tmpdir(), 'debug-exit-')), 'guest.bin')
    writeFileSync(guest, Uint8Array.of(0xb0, 0x05, 0xe6, 0xf4, 0xf4)) // mov al, 5; out 0xf4, al; hlt
    const m = await Machine.fromObject(
      {
        machine: { memory: '64KiB' },
        components: {
          guest: { type: 'raw-image', file: guest, address: 0x1000 },
          exit: { type: 'debug-exit', resources: { port: 0xf4 } },
        },
      },
      { hypervisor: new TestHypervisor(), registry },
    )
    expect(await m.run()).toMatchObject({
      status: 'guest-exit',
      code: 11,
      reason: 'guest wrote 5 to debug-exit',
    })
    await m.dispose()
  })
})
