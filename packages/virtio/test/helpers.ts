import { createHash } from 'node:crypto'
// Builds a transport around a device over fresh test memory, with the fake driver attached.
import { type FlatMemory, guestAddress } from '@vmm/core'
import type { VirtioDevice } from '../src/device.js'
import { VirtioMmioTransport } from '../src/mmio/transport.js'
import { MmioDriver, TestInterruptLine, testMemory } from '../src/testing/index.js'

export function rig<D extends VirtioDevice>(device: D, memorySize = 4 << 20) {
  const memory = testMemory(memorySize)
  const irq = new TestInterruptLine()
  const failures: unknown[] = []
  const transport = new VirtioMmioTransport(device, memory, irq, { onNeedsReset: (e) => failures.push(e) })
  const driver = new MmioDriver(transport, memory)
  return { device, memory, irq, transport, driver, failures }
}

/** A digest of every byte of test memory, to check that nothing wrote it (a paused machine). */
export function snapshot(memory: FlatMemory): string {
  return createHash('sha256')
    .update(memory.slice(guestAddress(0), memory.backing.size))
    .digest('hex')
}
