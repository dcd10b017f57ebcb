// The exit dispatcher against fabricated struct kvm_run contents: no /dev/kvm needed.
import { describe, expect, it } from 'vitest'
import { dispatchExit, type ExitHandler, KvmExitReason, KvmRunView, type VcpuExit } from '../src/index.js'

function fakeRun(): { view: KvmRunView; dv: DataView; u8: Uint8Array } {
  const buf = new ArrayBuffer(3 * 4096)
  return { view: new KvmRunView(buf), dv: new DataView(buf), u8: new Uint8Array(buf) }
}

function recorder() {
  const calls: [string, number, number[]][] = []
  const exits: VcpuExit[] = []
  const h: ExitHandler<string> = {
    pioIn: (port, data) => {
      calls.push(['pioIn', port, [...data]])
      data.fill(0xab)
    },
    pioOut: (port, data) => calls.push(['pioOut', port, [...data]]),
    mmioRead: (addr, data) => {
      calls.push(['mmioRead', addr, [...data]])
      data.set([1, 2, 3, 4, 5, 6, 7, 8].slice(0, data.length))
    },
    mmioWrite: (addr, data) => calls.push(['mmioWrite', addr, [...data]]),
    onExit: (e) => {
      exits.push(e)
      return e.kind === 'hlt' ? 'stop' : 'resume'
    },
  }
  return { calls, exits, h }
}

function io(dv: DataView, dir: 0 | 1, size: number, port: number, count: number, offset = 4096) {
  dv.setUint32(8, KvmExitReason.Io, true)
  dv.setUint8(32, dir)
  dv.setUint8(33, size)
  dv.setUint16(34, port, true)
  dv.setUint32(36, count, true)
  dv.setBigUint64(40, BigInt(offset), true)
}

describe('dispatchExit', () => {
  it('hands a port write its bytes and resumes', () => {
    const { view, dv, u8 } = fakeRun()
    io(dv, 1, 2, 0x3f8, 1)
    u8.set([0x34, 0x12], 4096)
    const r = recorder()
    expect(dispatchExit(view, r.h, 'cpu0')).toBe('resume')
    expect(r.calls).toEqual([['pioOut', 0x3f8, [0x34, 0x12]]])
  })

  it('writes a port read answer into kvm_run where KVM picks it up', () => {
    const { view, dv, u8 } = fakeRun()
    io(dv, 0, 4, 0xcfc, 1)
    const r = recorder()
    dispatchExit(view, r.h, 'cpu0')
    expect(r.calls[0]![0]).toBe('pioIn')
    expect([...u8.subarray(4096, 4100)]).toEqual([0xab, 0xab, 0xab, 0xab])
    expect(u8[4100]).toBe(0)
  })

  it('splits string I/O (rep outsb) into count accesses', () => {
    const { view, dv, u8 } = fakeRun()
    io(dv, 1, 1, 0x80, 3)
    u8.set([7, 8, 9], 4096)
    const r = recorder()
    dispatchExit(view, r.h, 'cpu0')
    expect(r.calls).toEqual([
      ['pioOut', 0x80, [7]],
      ['pioOut', 0x80, [8]],
      ['pioOut', 0x80, [9]],
    ])
  })

  it('rejects a data_offset that points outside the mapping', () => {
    const { view, dv } = fakeRun()
    io(dv, 1, 4, 0x80, 1, 3 * 4096 - 2)
    expect(() => dispatchExit(view, recorder().h, 'cpu0')).toThrow(RangeError)
  })

  it('decodes MMIO above 4 GiB, reads and writes', () => {
    const { view, dv, u8 } = fakeRun()
    dv.setUint32(8, KvmExitReason.Mmio, true)
    dv.setBigUint64(32, 0x1_2345_6000n, true)
    dv.setUint32(48, 4, true)
    dv.setUint8(52, 0)
    const r = recorder()
    dispatchExit(view, r.h, 'cpu0')
    expect(r.calls[0]).toEqual(['mmioRead', 0x1_2345_6000, [0, 0, 0, 0]])
    expect([...u8.subarray(40, 48)]).toEqual([1, 2, 3, 4, 0, 0, 0, 0])

    dv.setUint8(52, 1)
    dv.setUint32(48, 8, true)
    u8.set([9, 9, 9, 9, 9, 9, 9, 9], 40)
    dispatchExit(view, r.h, 'cpu0')
    expect(r.calls[1]).toEqual(['mmioWrite', 0x1_2345_6000, [9, 9, 9, 9, 9, 9, 9, 9]])
  })

  it('passes hlt, shutdown and system events to onExit, which decides', () => {
    const { view, dv } = fakeRun()
    const r = recorder()
    dv.setUint32(8, KvmExitReason.Hlt, true)
    expect(dispatchExit(view, r.h, 'cpu0')).toBe('stop')
    dv.setUint32(8, KvmExitReason.Shutdown, true)
    expect(dispatchExit(view, r.h, 'cpu0')).toBe('resume')
    dv.setUint32(8, KvmExitReason.SystemEvent, true)
    dv.setUint32(32, 2, true)
    dv.setUint32(36, 1, true)
    dv.setBigUint64(40, 5n, true)
    dispatchExit(view, r.h, 'cpu0')
    expect(r.exits).toEqual([
      { kind: 'hlt' },
      { kind: 'shutdown' },
      { kind: 'system-event', type: 2, name: 'reset', data: [5n] },
    ])
  })

  it('surfaces an emulation failure with its instruction bytes', () => {
    const { view, dv, u8 } = fakeRun()
    dv.setUint32(8, KvmExitReason.InternalError, true)
    dv.setUint32(32, 1, true) // KVM_INTERNAL_ERROR_EMULATION
    dv.setUint32(36, 4, true) // ndata: flags + 2 words of bytes + 1
    dv.setBigUint64(40, 1n, true) // KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES
    u8[48] = 4
    u8.set([0xf3, 0x0f, 0xb8, 0xc3], 49)
    const r = recorder()
    dispatchExit(view, r.h, 'cpu0')
    const e = r.exits[0]!
    expect(e.kind).toBe('internal-error')
    if (e.kind !== 'internal-error') return
    expect(e.suberror).toBe(1)
    expect([...e.instructionBytes]).toEqual([0xf3, 0x0f, 0xb8, 0xc3])
  })

  it('reports other internal errors without instruction bytes, and unknown reasons by number', () => {
    const { view, dv } = fakeRun()
    dv.setUint32(8, KvmExitReason.InternalError, true)
    dv.setUint32(32, 3, true)
    dv.setUint32(36, 1, true)
    dv.setBigUint64(40, 0x80000b0en, true)
    const r = recorder()
    dispatchExit(view, r.h, 'cpu0')
    expect(r.exits[0]).toEqual({
      kind: 'internal-error',
      suberror: 3,
      instructionBytes: new Uint8Array(0),
      data: [0x80000b0en],
    })
    dv.setUint32(8, 99, true)
    dispatchExit(view, r.h, 'cpu0')
    expect(r.exits[1]).toMatchObject({ kind: 'unknown', reason: 99 })
    dv.setUint32(8, KvmExitReason.FailEntry, true)
    dv.setBigUint64(32, 0x21n, true)
    dv.setUint32(40, 1, true)
    dispatchExit(view, r.h, 'cpu0')
    expect(r.exits[2]).toEqual({ kind: 'fail-entry', hardwareReason: 0x21n, cpu: 1 })
  })

  it('resumes on KVM_EXIT_INTR without bothering the handler', () => {
    const { view, dv } = fakeRun()
    dv.setUint32(8, KvmExitReason.Intr, true)
    const r = recorder()
    expect(dispatchExit(view, r.h, 'cpu0')).toBe('resume')
    expect(r.exits).toEqual([])
  })
})
