// A hostile 9P client (issue 16): sequences of random T-messages, shaped by each message's layout
// (fids from a small set so they hit live ones, names from a pool of escapes: '..', '/', NUL,
// overlong, symlinks to outside) and then cut short or corrupted, against a real directory next
// to an `outside` one that symlinks point to. Invariants: handle() never rejects, every reply is a
// well-formed R-message or Rlerror for its tag, nothing outside the root is created, changed or
// removed, and once the session is closed no host descriptor is left open. Plus hostile
// descriptor chains on the virtio-9p device itself (runHostile: nothing thrown, no access
// outside RAM).
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fuzz } from '@vmm/core/testing'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { P9Device } from '../src/devices/9p/device.js'
import { Msg, NOTAG, P9Server, Writer } from '../src/devices/9p/index.js'
import { hostileCaseWith, runHostile } from './hostile.js'
import { decode, plainRequest } from './p9-client.js'

const base = mkdtempSync(join(tmpdir(), 'vmm-9p-fuzz-'))
afterAll(() => rmSync(base, { recursive: true, force: true }))
const outside = join(base, 'outside')
mkdirSync(outside)
writeFileSync(join(outside, 'secret'), 'secret')
mkdirSync(join(outside, 'sub'))

/** Everything about a tree that a write could change: names, types, sizes, modes, owners, mtimes. */
function fingerprint(dir: string): string[] {
  const out: string[] = []
  const walk = (d: string, prefix: string) => {
    for (const name of readdirSync(d).sort()) {
      const st = lstatSync(join(d, name))
      out.push(`${prefix}${name} ${st.mode} ${st.size} ${st.uid}:${st.gid} ${st.mtimeMs} ${st.nlink}`)
      if (st.isDirectory()) walk(join(d, name), `${prefix}${name}/`)
    }
  }
  const st = lstatSync(dir)
  out.push(`. ${st.mode} ${st.uid}:${st.gid} ${st.mtimeMs}`)
  walk(dir, '')
  return out
}
const outsideBefore = fingerprint(outside)

let caseNo = 0
function freshRoot(): string {
  const root = join(base, `root-${caseNo++}`)
  mkdirSync(join(root, 'd'), { recursive: true })
  writeFileSync(join(root, 'f'), 'file')
  symlinkSync(outside, join(root, 'out'))
  symlinkSync('../outside/secret', join(root, 'rel'))
  symlinkSync('/etc', join(root, 'etc'))
  return root
}

type Field = 'fid' | 'u8' | 'u16' | 'u32' | 'u64' | 'name' | 'str' | 'data' | 'names'
/** Field layouts of the T-messages (Documentation/filesystems/9p.rst, net/9p/client.c). */
const layouts: Record<number, Field[]> = {
  [Msg.TATTACH]: ['fid', 'fid', 'str', 'str', 'u32'],
  [Msg.TWALK]: ['fid', 'fid', 'names'],
  [Msg.TLOPEN]: ['fid', 'u32'],
  [Msg.TLCREATE]: ['fid', 'name', 'u32', 'u32', 'u32'],
  [Msg.TREAD]: ['fid', 'u64', 'u32'],
  [Msg.TWRITE]: ['fid', 'u64', 'data'],
  [Msg.TCLUNK]: ['fid'],
  [Msg.TREMOVE]: ['fid'],
  [Msg.TGETATTR]: ['fid', 'u64'],
  [Msg.TSETATTR]: ['fid', 'u32', 'u32', 'u32', 'u32', 'u64', 'u64', 'u64', 'u64', 'u64'],
  [Msg.TREADDIR]: ['fid', 'u64', 'u32'],
  [Msg.TMKDIR]: ['fid', 'name', 'u32', 'u32'],
  [Msg.TSYMLINK]: ['fid', 'name', 'name', 'u32'],
  [Msg.TMKNOD]: ['fid', 'name', 'u32', 'u32', 'u32', 'u32'],
  [Msg.TRENAME]: ['fid', 'fid', 'name'],
  [Msg.TRENAMEAT]: ['fid', 'name', 'fid', 'name'],
  [Msg.TUNLINKAT]: ['fid', 'name', 'u32'],
  [Msg.TREADLINK]: ['fid'],
  [Msg.TLINK]: ['fid', 'fid', 'name'],
  [Msg.TSTATFS]: ['fid'],
  [Msg.TFSYNC]: ['fid', 'u32'],
  [Msg.TXATTRWALK]: ['fid', 'fid', 'name'],
  [Msg.TXATTRCREATE]: ['fid', 'name', 'u64', 'u32'],
  [Msg.TLOCK]: ['fid', 'u8', 'u32', 'u64', 'u64', 'u32', 'str'],
  [Msg.TGETLOCK]: ['fid', 'u8', 'u64', 'u64', 'u32', 'str'],
  [Msg.TFLUSH]: ['u16'],
  [Msg.TVERSION]: ['u32', 'str'],
}
const types = Object.keys(layouts).map(Number)

const name = fc.oneof(
  fc.constantFrom(
    '..',
    '.',
    '',
    'f',
    'd',
    'out',
    'rel',
    'etc',
    'new',
    'x/y',
    '/etc/passwd',
    'a\u0000b',
    'n'.repeat(256),
  ),
  fc.string({ maxLength: 12 }),
)
const u32 = fc.oneof(
  fc.integer({ min: 0, max: 0o200777 }),
  fc.constantFrom(0, 0xffff_ffff, 0o100644, 0o40755, 0x1ff, 0x200),
)
const u64 = fc.oneof(fc.bigInt({ min: 0n, max: 1n << 20n }), fc.constantFrom(0n, 2n ** 53n, 2n ** 64n - 1n))
const field = (f: Field): fc.Arbitrary<(w: Writer) => void> => {
  switch (f) {
    case 'fid':
      return fc
        .oneof(fc.integer({ min: 0, max: 7 }), fc.constant(0xffff_ffff))
        .map((v) => (w) => void w.u32(v))
    case 'u8':
      return fc.integer({ min: 0, max: 255 }).map((v) => (w) => void w.u8(v))
    case 'u16':
      return fc.integer({ min: 0, max: 0xffff }).map((v) => (w) => void w.u16(v))
    case 'u32':
      return u32.map((v) => (w) => void w.u32(v))
    case 'u64':
      return u64.map((v) => (w) => void w.u64(v))
    case 'name':
    case 'str':
      return name.map((v) => (w) => void w.string(v))
    case 'data':
      return fc.uint8Array({ maxLength: 300 }).map((d) => (w) => void w.u32(d.length).bytes(d))
    case 'names':
      return fc.array(name, { maxLength: 5 }).map((ns) => (w) => {
        w.u16(ns.length)
        for (const n of ns) w.string(n)
      })
  }
}

/** One T-message: a shaped body, then maybe cut short, corrupted or given a random type. */
const message = fc
  .record({
    type: fc.oneof(
      { weight: 9, arbitrary: fc.constantFrom(...types) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
    ),
    tag: fc.integer({ min: 0, max: 0xffff }),
    seed: fc.integer(),
    cut: fc.option(fc.integer({ min: 0, max: 60 }), { freq: 4 }),
    flip: fc.option(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { freq: 6 }),
  })
  .chain((m) =>
    fc.tuple(...(layouts[m.type] ?? ['u32', 'u32']).map(field)).map((fields) => {
      const w = new Writer()
      for (const f of fields) f(w)
      let bytes = w.finish(m.type, m.tag).slice()
      if (m.cut !== null) bytes = bytes.subarray(0, Math.min(bytes.length, m.cut))
      if (m.flip && bytes.length > 7) bytes[7 + (m.flip[0] % (bytes.length - 7))] ^= m.flip[1]
      return bytes
    }),
  )

const session = (root: string) => {
  const server = new P9Server({ root, readonly: false, maxFids: 16 })
  const start = [
    new Writer().u32(65536).string('9P2000.L').finish(Msg.TVERSION, NOTAG),
    new Writer().u32(0).u32(~0).string('').string('').u32(1000).finish(Msg.TATTACH, 1),
    new Writer().u32(0).u32(1).u16(1).string('d').finish(Msg.TWALK, 1),
    new Writer().u32(0).u32(2).u16(1).string('f').finish(Msg.TWALK, 1),
    new Writer().u32(2).u32(2).finish(Msg.TLOPEN, 1),
    new Writer().u32(0).u32(3).u16(1).string('out').finish(Msg.TWALK, 1),
  ]
  return { server, start }
}

describe('9P2000.L server against a hostile client (fast-check)', () => {
  it('never throws, answers every tag well-formed, touches nothing outside, leaks no descriptor', async () => {
    await fuzz(
      (parameters) =>
        fc.assert(
          fc.asyncProperty(
            fc.array(message, { minLength: 1, maxLength: 25 }),
            fc.boolean(),
            async (messages, parallel) => {
              const root = freshRoot()
              const { server, start } = session(root)
              for (const m of start) await server.handle(plainRequest(m))
              const one = async (m: Uint8Array) => {
                const target = new Uint8Array(4096)
                const reply = await server.handle(plainRequest(m, 1 << 16, target))
                const r = decode(reply, target)
                expect(new DataView(reply.bytes.buffer, reply.bytes.byteOffset).getUint32(0, true)).toBe(
                  reply.bytes.length + reply.data,
                )
                if (m.length >= 7) {
                  expect(r.tag).toBe(m[5]! | (m[6]! << 8))
                  expect([m[4]! + 1, Msg.RLERROR]).toContain(r.type)
                }
              }
              if (parallel) await Promise.all(messages.map(one))
              else for (const m of messages) await one(m)
              server.close()
              expect(server.live.size).toBe(0)
              expect(fingerprint(outside)).toEqual(outsideBefore)
              expect(readdirSync(base).filter((n) => !n.startsWith('root-'))).toEqual(['outside'])
              rmSync(root, { recursive: true, force: true })
            },
          ),
          parameters,
        ),
      60,
    )
  })
})

describe('virtio-9p device against hostile descriptor chains (fast-check)', () => {
  it('nothing escapes, no access outside RAM, NEEDS_RESET or a valid used ring', async () => {
    const root = freshRoot()
    await fuzz(
      (parameters) =>
        fc.assert(
          fc.asyncProperty(hostileCaseWith(message), (c) =>
            runHostile(
              () => new P9Device({ tag: 'fuzz', path: root, readonly: false }),
              0,
              c,
              () => new Promise((r) => setTimeout(r, 5)),
            ),
          ),
          parameters,
        ),
      40,
    )
    expect(fingerprint(outside)).toEqual(outsideBefore)
  })
})
