// pnpm bench:9p — the host side of virtio-9p: Tread and Twrite of 256 KiB through the 9P2000.L
// server (message parsing, fid lookup, readv/writev on libuv's pool, reply encoding) against bare
// fs.readv/fs.writev of the same sizes on the same file, with the same number of requests in
// flight (1, 8, 32). The ratio is the server's overhead; what a guest sees on top of it is its
// kernel's 9p client and the virtqueue (on kvm_pvm hosts, emulated: see test/e2e/micro-9p.test.ts).
// Absolute numbers on shared machines are noise: read the ratios. Needs `pnpm build` first.
import * as fs from 'node:fs'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { P9Msg as Msg, P9Server } from '@vmm/virtio'

const MiB = 1024 * 1024
const FILE_MIB = Number(process.env.FILE_MIB ?? 64)
const CHUNK = 256 * 1024
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const dir = mkdtempSync(join(tmpdir(), 'vmm-bench-9p-'))
const file = join(dir, 'data')
fs.writeFileSync(file, Buffer.alloc(FILE_MIB * MiB, 7))

/** A T-message: size type tag body. */
function message(type, tag, body) {
  const b = Buffer.alloc(7 + body.length)
  b.writeUInt32LE(b.length, 0)
  b.writeUInt8(type, 4)
  b.writeUInt16LE(tag, 5)
  body.copy(b, 7)
  return b
}
const str = (s) => {
  const b = Buffer.alloc(2 + Buffer.byteLength(s))
  b.writeUInt16LE(Buffer.byteLength(s))
  b.write(s, 2)
  return b
}
const u32 = (v) => {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(v >>> 0)
  return b
}
const u64 = (v) => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(BigInt(v))
  return b
}
const req = (m, target, data) => ({
  message: m,
  data,
  readTarget: (n) => [target.subarray(0, n)],
  replyCapacity: 1 << 20,
})

async function server9p() {
  const server = new P9Server({ root: dir, readonly: false })
  const go = (m) => server.handle(req(m, Buffer.alloc(0)))
  await go(message(Msg.TVERSION, 0xffff, Buffer.concat([u32(512 * 1024), str('9P2000.L')])))
  await go(message(Msg.TATTACH, 1, Buffer.concat([u32(0), u32(~0), str(''), str(''), u32(0)])))
  await go(message(Msg.TWALK, 1, Buffer.concat([u32(0), u32(1), Buffer.from([1, 0]), str('data')])))
  await go(message(Msg.TLOPEN, 1, Buffer.concat([u32(1), u32(2)])))
  return server
}

/** MiB/s of `op(i, buffer)` over the whole file, `depth` requests in flight. */
async function run(depth, op) {
  const chunks = (FILE_MIB * MiB) / CHUNK
  const buffers = Array.from({ length: depth }, () => Buffer.alloc(CHUNK))
  let next = 0
  const t0 = process.hrtime.bigint()
  await Promise.all(
    buffers.map(async (b, slot) => {
      for (let i = next++; i < chunks; i = next++) await op(i, b, slot)
    }),
  )
  return FILE_MIB / (Number(process.hrtime.bigint() - t0) / 1e9)
}

const best = async (f) => {
  let top = 0
  for (let r = 0; r < ROUNDS; r++) top = Math.max(top, await f())
  return top
}

const server = await server9p()
const fd = fs.openSync(file, 'r+')
const readv = (i, b) => new Promise((res, rej) => fs.readv(fd, [b], i * CHUNK, (e) => (e ? rej(e) : res())))
const writev = (i, b) => new Promise((res, rej) => fs.writev(fd, [b], i * CHUNK, (e) => (e ? rej(e) : res())))
const tread = async (i, b, slot) => {
  const m = message(Msg.TREAD, slot, Buffer.concat([u32(1), u64(i * CHUNK), u32(CHUNK)]))
  const r = await server.handle(req(m, b))
  if (r.data !== CHUNK) throw new Error(`Tread returned ${r.data}`)
}
const twrite = async (i, b, slot) => {
  const head = message(Msg.TWRITE, slot, Buffer.concat([u32(1), u64(i * CHUNK), u32(CHUNK)]))
  head.writeUInt32LE(23 + CHUNK, 0)
  const r = await server.handle(req(head, Buffer.alloc(0), [b]))
  if (r.bytes[4] !== Msg.TWRITE + 1) throw new Error('Twrite failed')
}

console.log(
  `9P server vs bare fs, ${FILE_MIB} MiB in ${CHUNK / 1024} KiB requests (best of ${ROUNDS}; MiB/s)`,
)
console.log('op     depth   bare fs   9p server   9p/bare')
for (const [name, bare, p9] of [
  ['read', readv, tread],
  ['write', writev, twrite],
]) {
  for (const depth of [1, 8, 32]) {
    const a = await best(() => run(depth, bare))
    const b = await best(() => run(depth, p9))
    console.log(
      `${name.padEnd(6)} ${String(depth).padStart(5)} ${a.toFixed(0).padStart(9)} ${b.toFixed(0).padStart(11)} ${(b / a).toFixed(2).padStart(9)}`,
    )
  }
}
fs.closeSync(fd)
server.close()
rmSync(dir, { recursive: true, force: true })
