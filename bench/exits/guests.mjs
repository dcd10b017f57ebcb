// The two guests of bench/exits, assembled with binutils at run time (flat real-mode binaries).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const LOAD = 0x1000
export const MEM_SIZE = 0x80000 // RAM below; 0xF0000.. is unbacked, so accesses there exit as MMIO

const sources = {
  // `count` port writes, then hlt.
  pio: (count) => `.code16\nmov ecx, ${count}\n1: out 0x10, al\ndec ecx\njnz 1b\nhlt\n`,
  // `count` one-byte MMIO reads at 0xF0010, then hlt.
  mmio: (count) =>
    `.code16\nmov ax, 0xf000\nmov ds, ax\nmov ecx, ${count}\n1: mov al, [0x10]\ndec ecx\njnz 1b\nhlt\n`,
}

/** Writes the guest binary for `kind` to a temp dir and returns its path. */
export function buildGuest(kind, count) {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-bench-'))
  writeFileSync(join(dir, 'g.S'), `.intel_syntax noprefix\n${sources[kind](count)}`)
  execFileSync('as', ['--64', '-o', join(dir, 'g.o'), join(dir, 'g.S')])
  execFileSync('ld', [
    '-m',
    'elf_x86_64',
    `-Ttext=0x${LOAD.toString(16)}`,
    '--oformat=binary',
    '-e',
    '0',
    '-o',
    join(dir, 'g.bin'),
    join(dir, 'g.o'),
  ])
  return join(dir, 'g.bin')
}

export function readGuest(path) {
  return readFileSync(path)
}
