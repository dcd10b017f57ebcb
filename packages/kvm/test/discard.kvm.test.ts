// GuestRam.discard on the real /dev/kvm (kvm tier): the pages a balloon gives back read as zeroes
// afterwards, to the VMM and to a running guest, whatever backs guest RAM. The case that matters
// is a restored machine's RAM, mapped MAP_PRIVATE over its snapshot's memory file: MADV_DONTNEED
// alone would make those pages read the file's bytes again (issue 15), so discard replaces them
// with fresh anonymous memory, which KVM follows through its MMU notifier, and drops the file's
// page cache there.
import { execFileSync } from 'node:child_process'
import {
  closeSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { discardGuestPages } from '@vmm/host'
import { afterEach, describe, expect, it } from 'vitest'
import { Kvm, type Vm } from '../src/index.js'
import { assemble } from '../src/testing.js'
import { handler, kvmUnavailable, LOAD, realMode } from './harness.js'

const PAGE = 4096
const MIB = 1 << 20

let cleanups: (() => void)[] = []
afterEach(() => {
  for (const c of cleanups.reverse()) c()
  cleanups = []
})

function scratchDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-discard-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function openVm(): Vm {
  const kvm = Kvm.open()
  const vm = kvm.createVm()
  cleanups.push(() => {
    vm.dispose()
    kvm.close()
  })
  return vm
}

/** Resident bytes of the mappings inside [start, start + size) of this process (/proc/self/smaps). */
function rssIn(start: bigint, size: number): number {
  const end = start + BigInt(size)
  let rss = 0
  let inside = false
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line)
    if (range) inside = BigInt(`0x${range[1]}`) < end && BigInt(`0x${range[2]}`) > start
    else if (inside && line.startsWith('Rss:')) rss += Number(/(\d+)/.exec(line)![1]) * 1024
  }
  return rss
}

function writeSynced(file: string, data: Uint8Array): void {
  const fd = openSync(file, 'w')
  try {
    writeSync(fd, data)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/** Pages of `file` in the page cache (util-linux fincore). */
function cachedPages(file: string): number {
  const out = execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'PAGES', file], {
    encoding: 'utf8',
  })
  return Number(out.trim())
}

describe.skipIf(kvmUnavailable)('GuestRam.discard (real /dev/kvm)', () => {
  it('makes pages of RAM mapped from a memory file read as zeroes, to the VMM and to the running guest', async () => {
    // The "snapshot": the guest's code at LOAD, and 0xab in the page at 0x20000.
    const file = join(scratchDir(), 'memory')
    const image = new Uint8Array(MIB)
    image.fill(0xab, 0x20000, 0x20000 + PAGE)
    // Reads [0x20000] (out 0x10), again after the host discarded the page, then writes it and
    // reads it back: what a balloon's page looks like to the guest before, after and on reuse.
    image.set(
      assemble(`.code16
        mov ax, 0x2000
        mov ds, ax
        mov al, [0]
        out 0x10, al
        mov al, [0]
        out 0x10, al
        mov byte ptr [0], 0x5a
        mov al, [0]
        out 0x10, al
        hlt`),
      LOAD,
    )
    writeFileSync(file, image)
    const vm = openVm()
    const ram = vm.mapMemory(MIB, { file })
    vm.setUserMemoryRegion({ slot: 0, guestAddress: 0, size: ram.size, ram })
    const view = new Uint8Array(ram.buffers[0]!)
    const vcpu = vm.createVcpu(0)
    realMode(vcpu)
    const seen: number[] = []
    const exit = await vcpu.run(
      handler({
        pioOut: (_port, data) => {
          seen.push(data[0]!)
          // The guest has read the page (KVM mapped the file's page for it): give it back now.
          if (seen.length === 1) expect(ram.discard(0x20000, PAGE)).toBe(true)
        },
      }),
    )
    expect(exit).toEqual({ kind: 'hlt' })
    expect(seen).toEqual([0xab, 0x00, 0x5a])
    expect(view[0x20000]).toBe(0x5a)
    expect(view.subarray(0x20001, 0x20000 + PAGE).every((b) => b === 0)).toBe(true)
    // The neighbours are still the file's, and the file was never written.
    expect(view[0x1f000 + 7]).toBe(0)
    expect(view.subarray(LOAD, LOAD + 4)).toEqual(image.subarray(LOAD, LOAD + 4))
    expect(
      readFileSync(file)
        .subarray(0x20000, 0x20000 + PAGE)
        .every((b) => b === 0xab),
    ).toBe(true)
  })

  it('MADV_DONTNEED alone (what the balloon did before) reads the memory file back', () => {
    const file = join(scratchDir(), 'memory')
    writeFileSync(file, new Uint8Array(MIB).fill(0xcd))
    const ram = openVm().mapMemory(MIB, { file })
    const view = new Uint8Array(ram.buffers[0]!)
    view[0x3000] = 1 // a private copy
    discardGuestPages(ram.buffers[0]!, 0x3000, PAGE)
    expect(view[0x3000]).toBe(0xcd) // not zero: the snapshot's byte
    expect(ram.discard(0x3000, PAGE)).toBe(true)
    expect(view[0x3000]).toBe(0)
  })

  it("stops pinning the memory file: the mapping's resident pages and the file's page cache drop", () => {
    const size = 16 * MIB
    const file = join(scratchDir(), 'memory')
    // Written back, as a snapshot's file is by the time a clone runs: the kernel drops only clean
    // pages from the page cache.
    writeSynced(file, new Uint8Array(size).fill(0x11))
    const ram = openVm().mapMemory(size, { file })
    const view = new Uint8Array(ram.buffers[0]!)
    let sum = 0
    for (let i = 0; i < size; i += PAGE) sum += view[i]! // fault every page in from the file
    expect(sum).toBe((size / PAGE) * 0x11)
    const rssBefore = rssIn(ram.hostAddress, size)
    const cachedBefore = cachedPages(file)
    expect(rssBefore).toBeGreaterThanOrEqual(size * 0.9)
    expect(cachedBefore).toBeGreaterThanOrEqual((size / PAGE) * 0.9)
    // Every other 64 KiB run (separate ranges), then the rest (they merge).
    for (let at = 0; at < size; at += 128 * 1024) expect(ram.discard(at, 64 * 1024)).toBe(true)
    for (let at = 64 * 1024; at < size; at += 128 * 1024) expect(ram.discard(at, 64 * 1024)).toBe(true)
    const rssAfter = rssIn(ram.hostAddress, size)
    const cachedAfter = cachedPages(file)
    console.log(
      `[discard] 16 MiB from a memory file: resident ${rssBefore / 1024} -> ${rssAfter / 1024} KiB, page cache ${cachedBefore} -> ${cachedAfter} pages`,
    )
    expect(rssAfter).toBeLessThan(size * 0.05)
    expect(cachedAfter).toBeLessThan((size / PAGE) * 0.05)
    for (let i = 0; i < size; i += PAGE) sum += view[i]!
    expect(sum).toBe((size / PAGE) * 0x11) // all zeroes now
  })

  it('replaces at most 8192 separate ranges of a memory file, then only drops pages (false); touching ranges merge', () => {
    const pages = 2 * 8192 + 4
    const file = join(scratchDir(), 'memory')
    writeSynced(file, new Uint8Array(pages * PAGE).fill(0x22))
    const ram = openVm().mapMemory(pages * PAGE, { file })
    const view = new Uint8Array(ram.buffers[0]!)
    // Every other page: 8192 separate anonymous ranges, each its own kernel mapping.
    for (let i = 0; i < 8192; i++) expect(ram.discard(2 * i * PAGE, PAGE)).toBe(true)
    const next = 2 * 8192 * PAGE
    view[next] = 1
    expect(ram.discard(next, PAGE)).toBe(false) // one range more: dropped, the file's bytes again
    expect(view[next]).toBe(0x22)
    // A page between two replaced ones joins them: no new range, so it is replaced.
    expect(ram.discard(PAGE, PAGE)).toBe(true)
    expect(view[PAGE]).toBe(0)
    expect(view[0]).toBe(0)
    expect(view[3 * PAGE]).toBe(0x22)
  })

  it('zeroes anonymous and memfd RAM too, and refuses ranges that are not whole pages inside it', () => {
    const vm = openVm()
    for (const ram of [vm.mapMemory(MIB), vm.mapMemory(MIB, { memfd: 'vmm-discard-test' })]) {
      const view = new Uint8Array(ram.buffers[0]!)
      view.fill(0x77, 0x4000, 0x6000)
      expect(ram.discard(0x4000, 2 * PAGE)).toBe(true)
      expect(view.subarray(0x4000, 0x6000).every((b) => b === 0)).toBe(true)
      expect(view[0x3fff]).toBe(0)
      expect(() => ram.discard(0x4001, PAGE)).toThrow(/page-aligned/)
      expect(() => ram.discard(MIB - PAGE, 2 * PAGE)).toThrow(/inside the mapping/)
    }
  })
})
