// Builds a transport around a device over fresh test memory, with the fake driver attached.
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
