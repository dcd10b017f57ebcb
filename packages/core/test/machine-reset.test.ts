// Machine.reset (machine/reset.ts) on the test hypervisor: guest RAM holds again exactly what the
// loaders wrote (what the guest changed inside the image is undone, what it wrote elsewhere is
// zero), the vCPU is as it was after load, Resettable components reset between their pause and
// resume, a paused machine stays paused and a running one runs on.
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { guestAddress } from '../src/address.js'
import type { ComponentType } from '../src/component/component-type.js'
import { Tokens } from '../src/component/tokens.js'
import { Machine } from '../src/machine/machine.js'
import { recordingMemory } from '../src/machine/reset.js'
import { TestHypervisor } from '../src/testing/test-hypervisor.js'
import { ContainerModule, injectable } from '../src/third-party/inversify.js'
import { fixture } from './fixtures.js'
import { testRegistry } from './test-types.js'

const log: string[] = []

@injectable()
class Resets {
  pause(): void {
    log.push('pause')
  }
  resume(): void {
    log.push('resume')
  }
  reset(): void {
    log.push('reset')
  }
}

const resetsType: ComponentType = {
  name: 'test-resets',
  description: 'test: logs pause, reset and resume',
  schema: { properties: {} },
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(Resets)),
}

const IMAGE = Uint8Array.of(0xeb, 0xfe, 0x11, 0x22) // jmp $, then two marker bytes

async function running() {
  log.length = 0
  const registry = testRegistry()
  registry.register(resetsType)
  const dir = fixture({ 'guest.bin': IMAGE })
  const m = await Machine.fromObject(
    {
      machine: { memory: '1MiB' },
      components: {
        guest: { type: 'raw-image', file: join(dir, 'guest.bin'), address: 0x7c00 },
        dev: { type: 'test-resets' },
      },
    },
    { hypervisor: new TestHypervisor(), registry },
  )
  await m.load()
  await m.start()
  return m
}

const byte = (m: Machine, a: number) => m.memory.readU8(guestAddress(a))

describe('Machine.reset', () => {
  it('on a paused machine: RAM as the loaders left it, vCPU as after load, devices reset; it stays paused', async () => {
    const m = await running()
    try {
      const regs0 = m.vcpus[0]!.getRegs()
      await m.pause()
      // What a guest would do: change its own image, write elsewhere (another page too), move on.
      m.memory.writeU8(guestAddress(0x7c02), 0x99)
      m.memory.writeU32(guestAddress(0x500), 0xdeadbeef)
      m.memory.writeU8(guestAddress(0x9_0000), 7)
      m.vcpus[0]!.setRegs({ ...regs0, rax: 5n, rip: 0x123n })
      log.length = 0
      await m.reset()
      expect(m.state).toBe('paused')
      expect(log).toEqual(['reset'])
      expect([0, 1, 2, 3].map((i) => byte(m, 0x7c00 + i))).toEqual([...IMAGE])
      expect(m.memory.readU32(guestAddress(0x500))).toBe(0)
      expect(byte(m, 0x9_0000)).toBe(0)
      expect(m.vcpus[0]!.getRegs()).toEqual(regs0)
      await m.resume()
      expect(m.state).toBe('running')
    } finally {
      await m.dispose()
    }
  })

  it('on a running machine: pauses the devices around the reset and runs on', async () => {
    const m = await running()
    try {
      m.memory.writeU8(guestAddress(0x7c03), 0)
      log.length = 0
      await m.reset()
      expect(m.state).toBe('running')
      expect(log).toEqual(['pause', 'reset', 'resume'])
      expect(byte(m, 0x7c03)).toBe(0x22)
      await m.pause() // the vCPU really runs again: a pause finds it
      expect(m.state).toBe('paused')
    } finally {
      await m.dispose()
    }
  })

  it('is refused on a machine that has not started', async () => {
    const registry = testRegistry()
    const dir = fixture({ 'guest.bin': IMAGE })
    const m = await Machine.fromObject(
      {
        machine: { memory: '1MiB' },
        components: { guest: { type: 'raw-image', file: join(dir, 'guest.bin'), address: 0x7c00 } },
      },
      { hypervisor: new TestHypervisor(), registry },
    )
    await expect(m.reset()).rejects.toThrow('machine is realized; expected running or paused')
    await m.dispose()
  })
})

describe('recordingMemory', () => {
  it('records every write and every view a loader takes, and passes everything through', async () => {
    const m = await running()
    try {
      const touched: [number, number][] = []
      const rec = recordingMemory(m.memory, touched)
      rec.write(guestAddress(0x1000), Uint8Array.of(1, 2, 3))
      rec.writeU32(guestAddress(0x2000), 1)
      rec.writeU8(guestAddress(0x2004), 1)
      rec.slice(guestAddress(0x3000), 0x100).fill(9)
      expect(rec.readU8(guestAddress(0x3000))).toBe(9)
      expect(rec.isMapped(guestAddress(0), 16)).toBe(true)
      expect(touched).toEqual([
        [0x1000, 0x1003],
        [0x2000, 0x2004],
        [0x2004, 0x2005],
        [0x3000, 0x3100],
      ])
    } finally {
      await m.dispose()
    }
  })
})
