import { connect, createServer, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { VsockDevice } from '../src/devices/vsock/device.js'
import { ShutdownFlag, VsockOp } from '../src/devices/vsock/packet.js'
import { until } from '../src/testing/index.js'
import { snapshot } from './helpers.js'
import { CID, setup as setupRig, waitFor } from './vsock-rig.js'

const cleanups: (() => void)[] = []
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c()
})
const setup = () => setupRig(cleanups)

describe('virtio-vsock', () => {
  it('reports the guest CID in its configuration', () => {
    const v = setup()
    expect(new DataView(v.driver.readConfig(0, 8).buffer).getBigUint64(0, true)).toBe(BigInt(CID))
  })

  it('connects a guest to <path>_<port> and carries data both ways', async () => {
    const v = setup()
    const sockets: Socket[] = []
    const server = createServer((s) => {
      sockets.push(s)
      s.on('data', (b) => s.write(`echo:${b}`))
    })
    await new Promise<void>((r) => server.listen(`${v.path}_52`, r))
    cleanups.push(() => server.close())
    v.postRx(8)
    v.send({ op: VsockOp.REQUEST, srcPort: 1000, dstPort: 52 })
    const response = await waitFor(v.collect, VsockOp.RESPONSE)
    expect(response.h).toMatchObject({ srcPort: 52, dstPort: 1000, dstCid: BigInt(CID) })
    v.send({ op: VsockOp.RW, srcPort: 1000, dstPort: 52 }, new TextEncoder().encode('ping'))
    const rw = await waitFor(v.collect, VsockOp.RW)
    expect(rw.data.toString()).toBe('echo:ping')
    v.send({ op: VsockOp.SHUTDOWN, srcPort: 1000, dstPort: 52, flags: ShutdownFlag.RCV | ShutdownFlag.SEND })
    await waitFor(v.collect, VsockOp.RST)
    await until(() => sockets[0]!.destroyed || sockets[0]!.readableEnded, 3000, 'host socket closed')
  })

  it('answers a guest connection to a port nobody listens on with RST', async () => {
    const v = setup()
    v.postRx(4)
    v.send({ op: VsockOp.REQUEST, srcPort: 1001, dstPort: 99 })
    const rst = await waitFor(v.collect, VsockOp.RST)
    expect(rst.h).toMatchObject({ srcPort: 99, dstPort: 1001 })
    expect((v.device as VsockDevice).connectionCount).toBe(0)
  })

  it('lets a host process connect with "CONNECT <port>" and get "OK <port>" once the guest accepts', async () => {
    const v = setup()
    v.postRx(8)
    const host = connect(v.path)
    cleanups.push(() => host.destroy())
    const fromGuest: Buffer[] = []
    host.on('data', (b) => fromGuest.push(b))
    await new Promise((r) => host.once('connect', r))
    host.write('CONNECT 5000\n')
    const request = await waitFor(v.collect, VsockOp.REQUEST)
    expect(request.h.dstPort).toBe(5000)
    const local = request.h.srcPort
    v.send({ op: VsockOp.RESPONSE, srcPort: 5000, dstPort: local })
    await until(() => Buffer.concat(fromGuest).toString() === `OK ${local}\n`, 3000, 'OK line')
    host.write('hello guest')
    const rw = await waitFor(v.collect, VsockOp.RW)
    expect(rw.data.toString()).toBe('hello guest')
    v.send({ op: VsockOp.RW, srcPort: 5000, dstPort: local }, new TextEncoder().encode('hello host'))
    await until(() => Buffer.concat(fromGuest).toString().endsWith('hello host'), 3000, 'data to host')
  })

  it('sends no more than the guest granted in credit', async () => {
    const v = setup()
    v.postRx(16)
    const host = connect(v.path)
    cleanups.push(() => host.destroy())
    await new Promise((r) => host.once('connect', r))
    host.write('CONNECT 7\n')
    const request = await waitFor(v.collect, VsockOp.REQUEST)
    v.send({ op: VsockOp.RESPONSE, srcPort: 7, dstPort: request.h.srcPort, bufAlloc: 100, fwdCnt: 0 })
    await new Promise((r) => setTimeout(r, 20))
    host.write(Buffer.alloc(1000, 1))
    await until(
      () =>
        v
          .collect()
          .filter((p) => p.h.op === VsockOp.RW)
          .reduce((n, p) => n + p.h.len, 0) === 100,
      3000,
      'credit',
    )
    await new Promise((r) => setTimeout(r, 50))
    const sent = () =>
      v
        .collect()
        .filter((p) => p.h.op === VsockOp.RW)
        .reduce((n, p) => n + p.h.len, 0)
    expect(sent()).toBe(100)
    v.send({ op: VsockOp.CREDIT_UPDATE, srcPort: 7, dstPort: request.h.srcPort, bufAlloc: 100, fwdCnt: 100 })
    await until(() => sent() === 200, 3000, 'more credit')
  })
})

describe('virtio-vsock on a paused machine', () => {
  it('holds what a host socket sends while paused, then delivers it after resume', async () => {
    const v = setup()
    const sockets: Socket[] = []
    const server = createServer((s) => sockets.push(s))
    await new Promise<void>((r) => server.listen(`${v.path}_53`, r))
    cleanups.push(() => server.close())
    v.postRx(8)
    v.send({ op: VsockOp.REQUEST, srcPort: 1001, dstPort: 53 })
    await waitFor(v.collect, VsockOp.RESPONSE)
    await until(() => sockets.length === 1, 3000, 'host socket')
    await v.transport.pause()
    const before = snapshot(v.memory)
    const edges = v.irq.edges
    sockets[0]!.write('while paused')
    await new Promise((r) => setTimeout(r, 150))
    expect(snapshot(v.memory)).toBe(before)
    expect(v.irq.edges).toBe(edges)
    expect(v.collect().some((p) => p.h.op === VsockOp.RW)).toBe(false)
    v.transport.resume()
    const rw = await waitFor(v.collect, VsockOp.RW)
    expect(rw.data.toString()).toBe('while paused')
  })
})
