// The pure pieces of vmm-oci: the agent's framing and records, VM sizing from linux.resources,
// mount options as mount(8) splits them, the 9p shares bind mounts come from, the VM manifest,
// and signal names.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { checkSpec, type Spec, vmSize } from '../src/config.js'
import { vmManifest } from '../src/machine.js'
import { guestMounts, parseOptions } from '../src/mounts.js'
import { processRecords } from '../src/procspec.js'
import { decodeRecords, encodeFrame, encodeRecords, FRAME_MAX, FrameReader, Msg } from '../src/protocol.js'
import { parseSignal } from '../src/signals.js'

describe('agent protocol', () => {
  it('frames survive being split at every byte', () => {
    const frames = [
      encodeFrame(Msg.stdout, 'hello'),
      encodeFrame(Msg.exit, Buffer.from([3, 0, 0, 0])),
      encodeFrame(Msg.ack),
    ]
    const all = Buffer.concat(frames)
    for (let cut = 0; cut <= all.length; cut++) {
      const r = new FrameReader()
      const got = [...r.push(all.subarray(0, cut)), ...r.push(all.subarray(cut))]
      expect(got.map((f) => [f.type, f.payload.toString('hex')])).toEqual([
        ['O', Buffer.from('hello').toString('hex')],
        ['X', '03000000'],
        ['A', ''],
      ])
    }
  })

  it('a frame over the limit is refused, not buffered', () => {
    const h = Buffer.alloc(5)
    h.writeUInt32LE(FRAME_MAX + 1)
    expect(() => new FrameReader().push(h)).toThrow(/frame of \d+ bytes/)
    expect(() => encodeFrame(Msg.stdin, Buffer.alloc(FRAME_MAX + 1))).toThrow(RangeError)
  })

  it('records round-trip, including empty and non-ASCII values', () => {
    const r: [string, string][] = [
      ['a', 'sh'],
      ['a', ''],
      ['e', 'GREETING=grüß dich'],
    ]
    expect(decodeRecords(encodeRecords(r))).toEqual(r)
    expect(() => decodeRecords(encodeRecords(r).subarray(0, 9))).toThrow()
  })

  it("a process becomes the agent's records", () => {
    const records = processRecords(
      {
        args: ['sh', '-c', 'exit 3'],
        env: ['PATH=/bin'],
        cwd: '/tmp',
        user: { uid: 1000, gid: 100, additionalGids: [5, 6], umask: 0o27 },
        rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 }],
        terminal: true,
      },
      true,
    )
    expect(records).toEqual([
      ['a', 'sh'],
      ['a', '-c'],
      ['a', 'exit 3'],
      ['e', 'PATH=/bin'],
      ['c', '/tmp'],
      ['u', '1000'],
      ['g', '100'],
      ['G', '5'],
      ['G', '6'],
      ['l', '7 1024 4096'],
      ['k', '27'],
      ['t', '1'],
      ['w', '1'],
    ])
  })
})

describe('VM size from linux.resources', () => {
  it.each([
    [undefined, { vcpus: 1, memoryMiB: 256 }],
    [{ cpu: { quota: 150000, period: 100000 } }, { vcpus: 2, memoryMiB: 256 }],
    [{ cpu: { quota: -1, period: 100000, cpus: '0-2,5' } }, { vcpus: 4, memoryMiB: 256 }],
    [{ cpu: { quota: 10_000_000, period: 100000 } }, { vcpus: 8, memoryMiB: 256 }],
    [{ memory: { limit: 100 * 2 ** 20 + 1 } }, { vcpus: 1, memoryMiB: 101 }],
    [{ memory: { limit: 2 ** 20 } }, { vcpus: 1, memoryMiB: 64 }],
    [{ memory: { limit: -1 } }, { vcpus: 1, memoryMiB: 256 }],
  ])('%j', (resources, size) => expect(vmSize(resources)).toEqual(size))
})

describe('mounts', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmm-oci-mounts-'))
    mkdirSync(join(dir, 'rootfs'))
    mkdirSync(join(dir, 'ctr'))
    for (const f of ['hosts', 'hostname', 'resolv.conf']) writeFileSync(join(dir, 'ctr', f), f)
    mkdirSync(join(dir, 'data'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('options split into flags and data; propagation dropped', () => {
    expect(parseOptions(['nosuid', 'noexec', 'nodev', 'ro'])).toEqual({ flags: 1 | 2 | 4 | 8, data: '' })
    expect(parseOptions(['rbind', 'rprivate', 'rw'])).toEqual({ flags: 4096 | 16384, data: '' })
    expect(parseOptions(['nosuid', 'mode=755', 'size=65536k'])).toEqual({
      flags: 2,
      data: 'mode=755,size=65536k',
    })
    expect(parseOptions(['ro', 'rw'])).toEqual({ flags: 0, data: '' })
  })

  it("Docker's file binds share their directory once; /dev and /dev/shm are the guest's own", () => {
    const spec = checkSpec(
      {
        ociVersion: '1.0.2',
        root: { path: 'rootfs' },
        process: { args: ['sh'], cwd: '/' },
        mounts: [
          { destination: '/proc', type: 'proc', source: 'proc' },
          { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755'] },
          { destination: '/dev/shm', type: 'bind', source: join(dir, 'ctr'), options: ['rbind'] },
          ...['hosts', 'hostname', 'resolv.conf'].map((f) => ({
            destination: `/etc/${f}`,
            type: 'bind',
            source: join(dir, 'ctr', f),
            options: ['rbind', 'rprivate'],
          })),
          { destination: '/data', type: 'bind', source: join(dir, 'data'), options: ['rbind', 'ro'] },
        ],
      },
      dir,
    ) as Spec
    const m = guestMounts(spec, true)
    expect(m.shares).toEqual([
      { tag: 'rootfs', hostPath: join(dir, 'rootfs'), readonly: false },
      { tag: 'bind1', hostPath: join(dir, 'ctr'), readonly: false },
      { tag: 'bind2', hostPath: join(dir, 'data'), readonly: true },
    ])
    const rec = m.records.map((r) => r.split('\0'))
    expect(rec[0]).toEqual(['root', 'rootfs', '/', '9p', '0', ''])
    expect(rec.slice(1, 3)).toEqual([
      ['share', 'bind1', '/run/shares/bind1', '9p', '0', ''],
      ['share', 'bind2', '/run/shares/bind2', '9p', '1', ''],
    ])
    expect(rec.slice(3)).toEqual([
      ['fs', 'proc', '/proc', 'proc', '0', ''],
      ['fs', 'devtmpfs', '/dev', 'devtmpfs', '2', ''],
      ['fs', 'shm', '/dev/shm', 'tmpfs', '0', 'mode=1777'],
      ['bind', '/run/shares/bind1/hosts', '/etc/hosts', '', String(4096 | 16384), ''],
      ['bind', '/run/shares/bind1/hostname', '/etc/hostname', '', String(4096 | 16384), ''],
      ['bind', '/run/shares/bind1/resolv.conf', '/etc/resolv.conf', '', String(4096 | 16384), ''],
      ['bind', '/run/shares/bind2', '/data', '', String(4096 | 16384 | 1), ''],
    ])
    const manifest = vmManifest({
      size: { vcpus: 2, memoryMiB: 128 },
      vmlinux: '/k',
      initrd: '/i',
      consoleLog: '/c',
      vsockPath: '/v',
      shares: m.shares,
    }) as { machine: Record<string, unknown>; components: Record<string, Record<string, unknown>> }
    expect(manifest.machine).toMatchObject({ memory: '128MiB', vcpus: 2 })
    expect(manifest.components['fs-bind2']).toMatchObject({ type: 'virtio-9p', tag: 'bind2', readonly: true })
    const slots = Object.values(manifest.components)
      .map((c) => (c.resources as { regs?: number; irq?: number } | undefined)?.regs)
      .filter((r) => r !== undefined)
    expect(new Set(slots).size).toBe(slots.length)
  })

  it('a bind source that does not exist is named', () => {
    const spec = checkSpec(
      {
        ociVersion: '1.0.2',
        root: { path: 'rootfs' },
        process: { args: ['sh'], cwd: '/' },
        mounts: [{ destination: '/x', type: 'bind', source: join(dir, 'gone') }],
      },
      dir,
    )
    expect(() => guestMounts(spec, true)).toThrow(`bind source "${join(dir, 'gone')}" of /x does not exist`)
  })
})

describe('signals', () => {
  it.each([
    ['9', 9],
    ['KILL', 9],
    ['SIGKILL', 9],
    ['term', 15],
    [undefined, 15],
    ['USR1', 10],
  ])('%s', (arg, n) => expect(parseSignal(arg)).toBe(n))
})
