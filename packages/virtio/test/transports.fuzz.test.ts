// Hostile drivers against the virtio-mmio register file (virtio 1.2 §4.2.2) with a real device
// behind it (issue 13, fuzz figures): random register accesses of any width at any offset, random
// values biased to the meaningful ones, and notifications with whatever the queue addresses are.
// Invariants: nothing throws; no guest-memory access outside RAM; MagicValue, Version, DeviceID
// and VendorID never change; QueueNumMax reads 0 for a queue the device lacks; InterruptStatus
// holds only its two defined bits; writing 0 to Status resets: Status and QueueReady read 0
// (§4.2.3.1, §2.1.2). The same for virtio-pci's BAR 0 (§4.1.4): the common configuration, ISR,
// notification and MSI-X structures: num_queues fixed, queue_size 0 for a queue the device lacks
// (§4.1.4.3.2), device_status 0 resets (queue_enable reads 0), and the PCI identity (vendor 0x1af4,
// device 0x1040 + type, §4.1.2.1) unchanged by any configuration write.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fuzz } from '@vmm/core/testing'
import { Command, Reg } from '@vmm/pci'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { BlockDevice } from '../src/devices/block/device.js'
import { RngDevice } from '../src/devices/rng/device.js'
import { MMIO_MAGIC, MmioReg, VirtioMmioTransport } from '../src/mmio/transport.js'
import { CommonCfg, Layout } from '../src/pci/transport.js'
import { TestInterruptLine, testMemory } from '../src/testing/index.js'
import { MEMORY_SIZE, watched } from './hostile.js'
import { pciRig } from './pci-driver.js'

const dir = mkdtempSync(join(tmpdir(), 'vmm-virtio-regs-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const image = join(dir, 'disk.img')
writeFileSync(image, new Uint8Array(64 * 1024))

const registers = Object.values(MmioReg)
const access = fc.record({
  write: fc.boolean(),
  offset: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...registers) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x1ff }) },
  ),
  width: fc.oneof(
    { weight: 4, arbitrary: fc.constant(4) },
    { weight: 1, arbitrary: fc.constantFrom(1, 2, 8) },
  ),
  value: fc.oneof(
    fc.constantFrom(0, 1, 2, 3, 0xf, 0x8, 0x40, 16, 256, 0x1000, MEMORY_SIZE / 2, MEMORY_SIZE - 16),
    fc.integer({ min: 0, max: 0xffff_ffff }),
  ),
})

describe('virtio-mmio register file under a hostile driver (fast-check)', () => {
  for (const [name, make, queues] of [
    ['virtio-rng', () => new RngDevice(), 1],
    ['virtio-blk', () => new BlockDevice({ path: image, readOnly: false, serial: 'r' }), 1],
  ] as const) {
    it(`${name}: identity fixed, QueueNumMax 0 past the queues, reset clears, nothing escapes`, async () => {
      await fuzz(
        (p) =>
          fc.assert(
            fc.asyncProperty(fc.array(access, { maxLength: 48 }), async (ops) => {
              const { memory, failures } = watched(testMemory(MEMORY_SIZE))
              const t = new VirtioMmioTransport(make(), memory, new TestInterruptLine())
              const d = new Uint8Array(8)
              const dv = new DataView(d.buffer)
              const reg = (offset: number) => {
                t.read(offset, d.subarray(0, 4))
                return dv.getUint32(0, true)
              }
              const identity = [
                MmioReg.MAGIC_VALUE,
                MmioReg.VERSION,
                MmioReg.DEVICE_ID,
                MmioReg.VENDOR_ID,
              ].map(reg)
              expect(identity[0]).toBe(MMIO_MAGIC)
              let queueSel = 0
              for (const o of ops) {
                const data = d.subarray(0, o.width)
                if (o.write) {
                  dv.setUint32(0, o.value >>> 0, true)
                  t.write(o.offset, data)
                  if (o.offset === MmioReg.QUEUE_SEL && o.width === 4) queueSel = o.value >>> 0
                  if (o.offset === MmioReg.STATUS && o.width === 4 && o.value === 0) {
                    queueSel = 0 // the reset clears the selectors too
                    expect(reg(MmioReg.STATUS)).toBe(0)
                    expect(reg(MmioReg.QUEUE_READY)).toBe(0)
                  }
                } else t.read(o.offset, data)
                if (queueSel >= queues) expect(reg(MmioReg.QUEUE_NUM_MAX)).toBe(0)
                expect(reg(MmioReg.INTERRUPT_STATUS) & ~3).toBe(0)
              }
              await new Promise<void>((r) => setImmediate(r))
              expect(
                [MmioReg.MAGIC_VALUE, MmioReg.VERSION, MmioReg.DEVICE_ID, MmioReg.VENDOR_ID].map(reg),
              ).toEqual(identity)
              await t.dispose()
              expect(failures).toEqual([])
            }),
            p,
          ),
        100,
      )
    })
  }
})

const C = CommonCfg
const commonFields = Object.values(CommonCfg).filter((v) => v !== C.SIZE)
const barAccess = fc.record({
  write: fc.boolean(),
  offset: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...commonFields) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: Layout.SIZE - 1 }) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(Layout.ISR, Layout.NOTIFY, Layout.NOTIFY + 4, Layout.MSIX_TABLE + 12),
    },
  ),
  width: fc.constantFrom(1, 2, 4, 8),
  value: fc.oneof(
    fc.constantFrom(0, 1, 2, 3, 0xf, 0x40, 16, 0xffff, MEMORY_SIZE / 2),
    fc.integer({ min: 0, max: 0xffff_ffff }),
  ),
  config: fc.option(
    fc.record({ reg: fc.integer({ min: 0, max: 0xff }), value: fc.integer({ min: 0, max: 0xffff_ffff }) }),
    {
      freq: 8,
      nil: undefined,
    },
  ),
})

describe('virtio-pci BAR 0 and configuration space under a hostile driver (fast-check)', () => {
  it('virtio-blk-pci: identity fixed, queue_size 0 past the queues, device_status 0 resets, nothing escapes', async () => {
    await fuzz(
      (p) =>
        fc.assert(
          fc.asyncProperty(fc.array(barAccess, { maxLength: 40 }), async (ops) => {
            const r = pciRig(new BlockDevice({ path: image, readOnly: false, serial: 'r' }), MEMORY_SIZE)
            r.driver.cfgWrite(Reg.Command, Command.MemorySpace | Command.BusMaster, 2)
            const bar = r.transport.barAddress(0)
            const d = new Uint8Array(8)
            const dv = new DataView(d.buffer)
            const common = (offset: number, width: 1 | 2) => {
              r.mmio.read(bar + offset, d.subarray(0, width))
              return width === 1 ? d[0]! : dv.getUint16(0, true)
            }
            const identity = () => [r.driver.cfgRead(0), r.driver.cfgRead(8)]
            const before = identity()
            const queues = common(C.NUM_QUEUES, 2)
            expect(queues).toBe(1) // BAR 0 answers: virtio-blk has one request queue
            let select = 0
            for (const o of ops) {
              if (o.config) {
                // The Command register stays as the rig set it, so BAR 0 stays where it is.
                if ((o.config.reg & ~3) !== Reg.Command && (o.config.reg < 0x10 || o.config.reg >= 0x28))
                  r.driver.cfgWrite(o.config.reg & ~3, o.config.value)
              }
              const data = d.subarray(0, o.width)
              if (o.write) {
                dv.setUint32(0, o.value >>> 0, true)
                dv.setUint32(4, 0, true)
                r.mmio.write(bar + o.offset, data)
                if (o.offset === C.QUEUE_SELECT && o.width === 2) select = o.value & 0xffff
                if (o.offset === C.DEVICE_STATUS && o.width === 1 && (o.value & 0xff) === 0) {
                  expect(common(C.DEVICE_STATUS, 1)).toBe(0)
                  expect(common(C.QUEUE_ENABLE, 2)).toBe(0)
                  // The reset returns every common-configuration field to its initial value, queue_select
                  // included (it reads 0 after), so the model follows.
                  expect(common(C.QUEUE_SELECT, 2)).toBe(0)
                  select = 0
                }
              } else r.mmio.read(bar + o.offset, data)
              expect(common(C.NUM_QUEUES, 2)).toBe(queues)
              if (select >= queues) expect(common(C.QUEUE_SIZE, 2)).toBe(0)
            }
            await new Promise<void>((res) => setImmediate(res))
            expect(identity()).toEqual(before)
            await r.transport.close() // releases the device's image fd (dispose alone leaked one per case)
          }),
          p,
        ),
      100,
    )
  })
})
