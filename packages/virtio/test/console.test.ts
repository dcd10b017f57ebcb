import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { SocketBackend } from '../src/devices/console/backend.js'
import { CONSOLE_INPUT_LIMIT, ConsoleDevice } from '../src/devices/console/device.js'
import { until } from '../src/testing/index.js'
import { FakeBackend } from './fakes.js'
import { rig, snapshot } from './helpers.js'

const text = (s: string) => new TextEncoder().encode(s)

describe('virtio-console', () => {
  it('writes the transmit queue to the backend', () => {
    const backend = new FakeBackend()
    const { driver } = rig(new ConsoleDevice(backend))
    driver.init()
    driver.queue(1).add([
      { address: driver.put(text('hello ')), length: 6 },
      { address: driver.put(text('world')), length: 5 },
    ])
    driver.notify(1)
    expect(new TextDecoder().decode(Uint8Array.from(backend.output))).toBe('hello world')
    expect(driver.queue(1).takeUsed()).toHaveLength(1)
  })

  it('holds input until the guest posts buffers, splits it across them, and applies back-pressure', () => {
    const backend = new FakeBackend()
    const { driver } = rig(new ConsoleDevice(backend))
    driver.init()
    backend.send(text('abcdefgh'))
    const a = driver.alloc(5)
    const b = driver.alloc(16)
    driver.queue(0).add([{ address: a, length: 5, write: true }])
    driver.queue(0).add([{ address: b, length: 16, write: true }])
    driver.notify(0)
    expect(
      driver
        .queue(0)
        .takeUsed()
        .map((u) => u.length),
    ).toEqual([5, 3])
    expect(new TextDecoder().decode(driver.get(a, 5))).toBe('abcde')
    expect(new TextDecoder().decode(driver.get(b, 3))).toBe('fgh')
    backend.send(new Uint8Array(CONSOLE_INPUT_LIMIT))
    expect(backend.paused).toBe(true)
    driver
      .queue(0)
      .add([{ address: driver.alloc(CONSOLE_INPUT_LIMIT), length: CONSOLE_INPUT_LIMIT, write: true }])
    driver.notify(0)
    expect(backend.paused).toBe(false)
  })

  it('takes an emergency write from configuration space', () => {
    const backend = new FakeBackend()
    const { driver } = rig(new ConsoleDevice(backend))
    driver.init()
    driver.writeConfig(8, Uint8Array.of(0x21, 0, 0, 0))
    expect(backend.output).toEqual([0x21])
  })

  it('serves one client on a Unix socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmm-console-'))
    const path = join(dir, 'console.sock')
    const device = new ConsoleDevice(new SocketBackend(path))
    const { driver } = rig(device)
    driver.init()
    const client = connect(path)
    const received: Buffer[] = []
    client.on('data', (b) => received.push(b))
    await new Promise((r) => client.once('connect', r))
    const buf = driver.alloc(64)
    driver.queue(0).add([{ address: buf, length: 64, write: true }])
    driver.notify(0)
    client.write('ls\n')
    await until(() => driver.queue(0).usedIndex === 1, 2000, 'console input')
    expect(new TextDecoder().decode(driver.get(buf, 3))).toBe('ls\n')
    driver.queue(1).add([{ address: driver.put(text('ok\n')), length: 3 }])
    driver.notify(1)
    await until(() => Buffer.concat(received).toString() === 'ok\n', 2000, 'console output')
    client.destroy()
    device.dispose()
    rmSync(dir, { recursive: true, force: true })
  })
})

describe('virtio-console on a paused machine', () => {
  it('holds host input while paused (and stops reading the backend), then delivers it in order', async () => {
    const backend = new FakeBackend()
    const { driver, memory, irq, transport } = rig(new ConsoleDevice(backend))
    driver.init()
    const buf = driver.alloc(64)
    driver.queue(0).add([{ address: buf, length: 64, write: true }])
    driver.notify(0)
    await transport.pause()
    expect(backend.paused).toBe(true)
    const before = snapshot(memory)
    const edges = irq.edges
    backend.send(text('held '))
    backend.send(text('input'))
    expect(snapshot(memory)).toBe(before)
    expect(irq.edges).toBe(edges)
    transport.resume()
    expect(backend.paused).toBe(false)
    expect(driver.queue(0).takeUsed()).toEqual([{ id: 0, length: 10 }])
    expect(new TextDecoder().decode(driver.get(buf, 10))).toBe('held input')
  })
})
