// Snapshot directories on real files: written under a temporary name and renamed last, read back
// with every check (format, version, size, checksum, memory size) naming the file at fault.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { checkState, hostMismatches, readSnapshot, SnapshotError, writeSnapshot } from '../src/index.js'

let root: string
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-snap-'))
})
afterEach(() => fs.rmSync(root, { recursive: true, force: true }))

const vcpu = () => ({
  regs: Object.fromEntries(
    [
      'rax',
      'rbx',
      'rcx',
      'rdx',
      'rsi',
      'rdi',
      'rsp',
      'rbp',
      'r8',
      'r9',
      'r10',
      'r11',
      'r12',
      'r13',
      'r14',
      'r15',
      'rip',
      'rflags',
    ].map((r) => [r, 0xffff_ffff_ffff_fff0n]),
  ),
  sregs: Object.fromEntries(['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'].map((r) => [r, 1n])),
  fpu: {},
  lapic: new Uint8Array(1024).fill(7),
  msrs: [{ index: 0x10, data: 123n }],
  mpState: 0,
  events: {},
  xsave: new Uint8Array(4096),
  tscKhz: 2_100_000,
})
const state = () => ({
  manifest: 'machine: {memory: 8192}\n',
  ramBytes: 8192,
  host: { cpuModel: 'Test CPU', tscKhz: 2_100_000 },
  vcpus: [vcpu()],
  vm: { pit: new Uint8Array([1, 2, 3]) },
  components: { uart: { lcr: 3 } },
  disks: [],
})
const ram = () => {
  const r = new Uint8Array(8192)
  r[5000] = 0xaa // page 1 has data, page 0 is zero (a hole)
  return r
}

describe('snapshot directories', () => {
  it('round-trips the state (bigints and bytes included) and guest RAM', () => {
    const dir = path.join(root, 's')
    writeSnapshot(dir, state(), [ram()])
    expect(fs.readdirSync(root)).toEqual(['s']) // no temporary left beside it
    const got = readSnapshot(dir)
    const s = checkState(got.state, 'state.json')
    expect(s.vcpus[0]!.regs.rip).toBe(0xffff_ffff_ffff_fff0n)
    expect(s.vcpus[0]!.lapic).toEqual(new Uint8Array(1024).fill(7))
    expect(s.vm.pit).toEqual(new Uint8Array([1, 2, 3]))
    expect(got.memoryBytes).toBe(8192)
    expect(new Uint8Array(fs.readFileSync(got.memoryFile))).toEqual(ram())
    expect(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')).toContain('"$bigint":"0xfffffffffffffff0"')
  })

  it('never overwrites: an existing directory is refused and left alone', () => {
    const dir = path.join(root, 's')
    fs.mkdirSync(dir)
    fs.writeFileSync(path.join(dir, 'mine'), 'x')
    expect(() => writeSnapshot(dir, state(), [ram()])).toThrow(/already exists/)
    expect(fs.readdirSync(dir)).toEqual(['mine'])
  })

  it('a snapshot that fails half-way leaves nothing that looks like a snapshot', () => {
    const dir = path.join(root, 's')
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(() => writeSnapshot(dir, cyclic, [ram()])).toThrow()
    expect(fs.readdirSync(root)).toEqual([])
  })

  it('refuses bad snapshots, naming the file and what is wrong', () => {
    const dir = path.join(root, 's')
    writeSnapshot(dir, state(), [ram()])
    const header = path.join(dir, 'snapshot.json')
    const stateFile = path.join(dir, 'state.json')
    const good = fs.readFileSync(stateFile)
    const goodHeader = fs.readFileSync(header, 'utf8')
    const refused = (re: RegExp, file: string) => {
      let e: unknown
      try {
        readSnapshot(dir)
      } catch (x) {
        e = x
      }
      expect(e).toBeInstanceOf(SnapshotError)
      expect((e as SnapshotError).path).toBe(file)
      expect((e as Error).message).toMatch(re)
    }
    fs.writeFileSync(stateFile, good.subarray(0, good.length - 10))
    refused(/truncated/, stateFile)
    const flipped = Buffer.from(good)
    flipped[20] ^= 1
    fs.writeFileSync(stateFile, flipped)
    refused(/checksum mismatch/, stateFile)
    fs.writeFileSync(stateFile, good)
    fs.writeFileSync(header, goodHeader.replace('"version": 1', '"version": 2'))
    refused(/format version 2; this vmm reads version 1/, header)
    fs.writeFileSync(header, goodHeader)
    fs.truncateSync(path.join(dir, 'memory'), 4096)
    refused(/memory.*4096 bytes, the header says 8192/, path.join(dir, 'memory'))
    fs.rmSync(header)
    refused(/missing/, header)
  })

  it('names the field of a state that has the wrong shape', () => {
    const s = state() as Record<string, unknown>
    ;(s.vcpus as ReturnType<typeof vcpu>[])[0]!.lapic = new Uint8Array(10)
    expect(() => checkState(s, 'state.json')).toThrow(/\$\.vcpus\[0\]\.lapic: must be 1024 bytes/)
  })

  it('refuses another CPU model, a TSC off by more than 250 ppm and a short memory file', () => {
    const s = checkState(state(), 'state.json')
    expect(hostMismatches(s, { cpuModel: 'Test CPU', tscKhz: 2_100_100, memoryBytes: 8192 })).toEqual([])
    expect(hostMismatches(s, { cpuModel: 'Other', tscKhz: 2_000_000, memoryBytes: 4096 })).toEqual([
      'taken on CPU "Test CPU", this host has "Other"',
      "taken with a TSC of 2100000 kHz, this host's is 2000000 kHz (47619 ppm apart)",
      'the memory file holds 4096 bytes, guest RAM is 8192',
    ])
  })
})
