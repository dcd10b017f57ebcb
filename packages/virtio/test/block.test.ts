import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { BlockDevice, BlockFeature, BlockRequest, BlockStatus } from '../src/devices/block/device.js'
import { Feature } from '../src/spec.js'
import { type BufferSpec, until } from '../src/testing/index.js'
import { rig, snapshot } from './helpers.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function image(bytes: number, fill = 0): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-blk-'))
  dirs.push(dir)
  const path = join(dir, 'disk.img')
  writeFileSync(path, new Uint8Array(bytes).fill(fill))
  return path
}

function header(type: number, sector: number): Uint8Array {
  const h = new DataView(new ArrayBuffer(16))
  h.setUint32(0, type, true)
  h.setBigUint64(8, BigInt(sector), true)
  return new Uint8Array(h.buffer)
}

function setup(path: string, readOnly = false) {
  const r = rig(new BlockDevice({ path, readOnly, serial: 'disk-0' }))
  r.driver.init({ features: 1n << Feature.RING_INDIRECT_DESC })
  const q = r.driver.queue(0)
  /** Posts a request and waits for it; returns the status byte and used length. */
  async function request(
    type: number,
    sector: number,
    data: { out?: Uint8Array; inLength?: number },
    indirect = false,
  ) {
    const d = r.driver
    const status = d.alloc(1)
    d.memory.writeU8(status, 0xff)
    const buffers: BufferSpec[] = [{ address: d.put(header(type, sector)), length: 16 }]
    if (data.out) buffers.push({ address: d.put(data.out), length: data.out.length })
    const input = d.alloc(data.inLength ?? 0)
    if (data.inLength) buffers.push({ address: input, length: data.inLength, write: true })
    buffers.push({ address: status, length: 1, write: true })
    const before = q.usedIndex
    q.add(buffers, { indirect })
    d.notify(0)
    await until(() => q.usedIndex !== before, 5000, 'the request')
    const [used] = q.takeUsed()
    return {
      status: d.memory.readU8(status),
      used: used!.length,
      data: data.inLength ? d.get(input, data.inLength) : undefined,
    }
  }
  return { ...r, request }
}

describe('virtio-blk', () => {
  it('reports the capacity from the file and offers RO only when read-only', () => {
    const path = image(8192)
    const rw = setup(path)
    expect(new DataView(rw.driver.readConfig(0, 8).buffer).getBigUint64(0, true)).toBe(16n)
    expect((rw.driver.offeredFeatures >> BlockFeature.RO) & 1n).toBe(0n)
    const ro = setup(image(8192), true) // another image: a writer holds path locked
    expect((ro.driver.offeredFeatures >> BlockFeature.RO) & 1n).toBe(1n)
    expect((ro.driver.offeredFeatures >> BlockFeature.DISCARD) & 1n).toBe(0n)
  })

  it('writes and reads back a pattern through the file, direct and indirect', async () => {
    const path = image(64 * 1024)
    const blk = setup(path)
    const pattern = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 3) & 0xff)
    expect(await blk.request(BlockRequest.OUT, 8, { out: pattern })).toMatchObject({
      status: BlockStatus.OK,
      used: 1,
    })
    expect(readFileSync(path).subarray(8 * 512, 8 * 512 + 4096)).toEqual(Buffer.from(pattern))
    const back = await blk.request(BlockRequest.IN, 8, { inLength: 4096 }, true)
    expect(back.status).toBe(BlockStatus.OK)
    expect(back.used).toBe(4097)
    expect(back.data).toEqual(pattern)
  })

  it('fails requests past the end or of a partial sector with IOERR, and writes to a read-only disk', async () => {
    const path = image(4096)
    const blk = setup(path)
    expect((await blk.request(BlockRequest.IN, 8, { inLength: 512 })).status).toBe(BlockStatus.IOERR)
    expect((await blk.request(BlockRequest.IN, 0, { inLength: 100 })).status).toBe(BlockStatus.IOERR)
    expect((await blk.request(BlockRequest.IN, 2 ** 60, { inLength: 512 })).status).toBe(BlockStatus.IOERR)
    const ro = setup(image(4096), true) // another image: a writer holds path locked
    expect((await ro.request(BlockRequest.OUT, 0, { out: new Uint8Array(512).fill(1) })).status).toBe(
      BlockStatus.IOERR,
    )
    expect(readFileSync(path).every((b) => b === 0)).toBe(true)
  })

  it('answers GET_ID with the serial, flushes, and rejects unknown types as UNSUPP', async () => {
    const blk = setup(image(4096))
    const id = await blk.request(BlockRequest.GET_ID, 0, { inLength: 20 })
    expect(id.status).toBe(BlockStatus.OK)
    expect(new TextDecoder().decode(id.data!.subarray(0, 7))).toBe('disk-0\0')
    expect((await blk.request(BlockRequest.FLUSH, 0, {})).status).toBe(BlockStatus.OK)
    expect((await blk.request(99, 0, {})).status).toBe(BlockStatus.UNSUPP)
  })

  it('writes zeroes over a range and validates discard ranges', async () => {
    const path = image(8192, 0xaa)
    const blk = setup(path)
    const seg = new DataView(new ArrayBuffer(16))
    seg.setBigUint64(0, 2n, true)
    seg.setUint32(8, 4, true)
    const segment = new Uint8Array(seg.buffer)
    expect((await blk.request(BlockRequest.WRITE_ZEROES, 0, { out: segment })).status).toBe(BlockStatus.OK)
    const file = readFileSync(path)
    expect(file.subarray(1024, 3072).every((b) => b === 0)).toBe(true)
    expect(file[1023]).toBe(0xaa)
    expect(file[3072]).toBe(0xaa)
    expect((await blk.request(BlockRequest.DISCARD, 0, { out: segment })).status).toBe(BlockStatus.OK)
    seg.setBigUint64(0, 15n, true) // 15 + 4 sectors runs past the 16-sector disk
    expect((await blk.request(BlockRequest.DISCARD, 0, { out: segment })).status).toBe(BlockStatus.IOERR)
  })

  it('discard punches a hole in the image; write-zeroes with unmap too; unknown flags are UNSUPP', async () => {
    const MiB = 1 << 20
    const path = image(4 * MiB, 0x5a)
    const blk = setup(path)
    const segment = (sector: number, sectors: number, flags = 0) => {
      const seg = new DataView(new ArrayBuffer(16))
      seg.setBigUint64(0, BigInt(sector), true)
      seg.setUint32(8, sectors, true)
      seg.setUint32(12, flags, true)
      return new Uint8Array(seg.buffer)
    }
    const blocks = () => statSync(path).blocks
    const before = blocks()
    // §5.2.6.2: DISCARD with unmap, or any unknown flag, is UNSUPP and changes nothing.
    expect((await blk.request(BlockRequest.DISCARD, 0, { out: segment(0, 2048, 1) })).status).toBe(
      BlockStatus.UNSUPP,
    )
    expect((await blk.request(BlockRequest.WRITE_ZEROES, 0, { out: segment(0, 2048, 2) })).status).toBe(
      BlockStatus.UNSUPP,
    )
    expect(blocks()).toBe(before)
    // 1 MiB at 1 MiB discarded: those blocks go back to the file system and read as zeroes.
    expect((await blk.request(BlockRequest.DISCARD, 0, { out: segment(2048, 2048) })).status).toBe(
      BlockStatus.OK,
    )
    expect(before - blocks()).toBe(MiB / 512)
    // Write-zeroes with unmap over the next MiB: a hole as well.
    expect((await blk.request(BlockRequest.WRITE_ZEROES, 0, { out: segment(4096, 2048, 1) })).status).toBe(
      BlockStatus.OK,
    )
    expect(before - blocks()).toBe((2 * MiB) / 512)
    const file = readFileSync(path)
    expect(file.length).toBe(4 * MiB)
    expect(file.subarray(MiB, 3 * MiB).every((b) => b === 0)).toBe(true)
    expect(file.subarray(0, MiB).every((b) => b === 0x5a)).toBe(true)
    expect(file.subarray(3 * MiB).every((b) => b === 0x5a)).toBe(true)
  })

  it('reports a host I/O error as IOERR', async () => {
    const path = image(4096)
    const blk = setup(path)
    // Closing the descriptor under the device makes the next readv fail with EBADF.
    const { closeSync } = await import('node:fs')
    closeSync((blk.device as unknown as { fd: number }).fd)
    expect((await blk.request(BlockRequest.IN, 0, { inLength: 512 })).status).toBe(BlockStatus.IOERR)
  })

  it('drops completions that arrive after a reset', async () => {
    const blk = setup(image(1 << 20))
    const q = blk.driver.queue(0)
    const status = blk.driver.alloc(1)
    q.add([
      { address: blk.driver.put(header(BlockRequest.IN, 0)), length: 16 },
      { address: blk.driver.alloc(65536), length: 65536, write: true },
      { address: status, length: 1, write: true },
    ])
    blk.driver.notify(0)
    blk.driver.writeReg(0x70, 0)
    await new Promise((r) => setTimeout(r, 50))
    expect(q.usedIndex).toBe(0)
  })
})

describe('virtio-blk on a paused machine', () => {
  it('finishes requests in flight before pause returns, and holds new ones until resume', async () => {
    const path = image(64 * 1024, 0x5a)
    const { driver, memory, irq, transport } = setup(path)
    const q = driver.queue(0)
    const post = () => {
      const status = driver.alloc(1)
      const data = driver.alloc(4096)
      q.add([
        { address: driver.put(header(BlockRequest.IN, 0)), length: 16 },
        { address: data, length: 4096, write: true },
        { address: status, length: 1, write: true },
      ])
      return { status, data }
    }
    const first = post()
    driver.notify(0) // readv is now on libuv's pool
    await transport.pause()
    // Done before pause resolved: data, status and used entry are in guest memory.
    expect(q.usedIndex).toBe(1)
    expect(driver.memory.readU8(first.status)).toBe(BlockStatus.OK)
    expect(driver.get(first.data, 4)).toEqual(new Uint8Array(4).fill(0x5a))
    const edges = irq.edges
    const second = post()
    const before = snapshot(memory)
    driver.notify(0)
    await new Promise((r) => setTimeout(r, 100))
    expect(snapshot(memory)).toBe(before)
    expect(q.usedIndex).toBe(1)
    expect(irq.edges).toBe(edges)
    transport.resume()
    await until(() => q.usedIndex === 2, 5000, 'the held request')
    expect(driver.memory.readU8(second.status)).toBe(BlockStatus.OK)
    expect(irq.level).toBe(true)
  })
})
