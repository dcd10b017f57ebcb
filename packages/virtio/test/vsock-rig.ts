// The vsock test rig: a VsockDevice on the fake driver, with helpers to post receive buffers,
// collect what the device sent to the guest and send packets as the guest.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { GuestAddress } from '@vmm/core'
import { VsockDevice } from '../src/devices/vsock/device.js'
import {
  decodeHeader,
  encodeHeader,
  HOST_CID,
  VSOCK_HDR_SIZE,
  VSOCK_TYPE_STREAM,
  type VsockHeader,
  VsockOp,
} from '../src/devices/vsock/packet.js'
import { until } from '../src/testing/index.js'
import { rig } from './helpers.js'

export const CID = 3

/** A rig whose cleanups (device disposed, socket directory removed) go onto `cleanups`. */
export function setup(cleanups: (() => void)[]) {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-vsock-'))
  const path = join(dir, 'v.sock')
  const device = new VsockDevice(CID, path)
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  cleanups.push(() => device.dispose())
  const r = rig(device)
  r.driver.init()
  const d = r.driver
  const rx = d.queue(0)
  const posted: GuestAddress[] = []
  const received: { h: VsockHeader; data: Buffer }[] = []
  const postRx = (n: number) => {
    for (let i = 0; i < n; i++) {
      const a = d.alloc(4096)
      const head = rx.add([{ address: a, length: 4096, write: true }])
      posted[head] = a
    }
    d.notify(0)
  }
  const collect = () => {
    for (const u of rx.takeUsed()) {
      const bytes = d.get(posted[u.id]!, u.length)
      const h = decodeHeader(bytes)
      received.push({ h, data: Buffer.from(bytes.subarray(VSOCK_HDR_SIZE, VSOCK_HDR_SIZE + h.len)) })
    }
    return received
  }
  const send = (h: Partial<VsockHeader>, data = new Uint8Array()) => {
    const hdr = new Uint8Array(VSOCK_HDR_SIZE)
    encodeHeader(
      {
        srcCid: BigInt(CID),
        dstCid: BigInt(HOST_CID),
        srcPort: 0,
        dstPort: 0,
        len: data.length,
        type: VSOCK_TYPE_STREAM,
        op: VsockOp.RW,
        flags: 0,
        bufAlloc: 65536,
        fwdCnt: 0,
        ...h,
      },
      hdr,
    )
    d.queue(1).add([
      { address: d.put(hdr), length: VSOCK_HDR_SIZE },
      ...(data.length ? [{ address: d.put(data), length: data.length }] : []),
    ])
    d.notify(1)
  }
  return { ...r, path, postRx, collect, send }
}

export const waitFor = async (collect: () => { h: VsockHeader }[], op: number) => {
  await until(() => collect().some((p) => p.h.op === op), 3000, `vsock op ${op}`)
  return collect().find((p) => p.h.op === op)!
}
