// A sampling profile of the guest kernel for investigations on kvm_pvm hosts, switched on by
// VMM_PROFILE_GUEST=<file> (the adapter reads it; quirks/index.ts). There every interrupt entry
// stops at its `clac` with an emulation failure, with the interrupted context's frame (rip, cs,
// rflags, rsp, ss) on the stack: the interrupted rip is counted, and the counts are written to
// <file> (hex rip, count) every 200 samples and when the process exits.
import { writeFileSync } from 'node:fs'
import type { Vcpu } from '../vm.js'

/** Reads the 64-bit little-endian value at a guest physical address; throws outside RAM. */
export type PhysicalReader = (address: bigint) => bigint

/** 4-level paging, 4 KiB / 2 MiB / 1 GiB pages (SDM Vol. 3A, 4.5). */
function translate(read: PhysicalReader, cr3: bigint, va: bigint): bigint | undefined {
  const PA = 0x000ffffffffff000n
  let table = cr3 & PA
  for (const shift of [39n, 30n, 21n, 12n]) {
    const e = read(table + ((va >> shift) & 511n) * 8n)
    if (!(e & 1n)) return undefined
    if ((shift === 30n || shift === 21n) && e & 0x80n) {
      const mask = (1n << shift) - 1n
      return (e & PA & ~mask) + (va & mask)
    }
    table = e & PA
  }
  return table + (va & 0xfffn)
}

/** Returns the sampler to call on each emulation failure of any vCPU of one VM. */
export function guestProfiler(read: PhysicalReader, file: string): (vcpu: Vcpu) => void {
  const counts = new Map<bigint, number>()
  let total = 0
  const dump = () => {
    const rows = [...counts].sort((a, b) => b[1] - a[1])
    writeFileSync(file, `${rows.map(([rip, n]) => `${rip.toString(16)} ${n}`).join('\n')}\n`)
  }
  process.on('exit', dump)
  return (vcpu) => {
    try {
      const { rsp } = vcpu.getRegs()
      const cr3 = vcpu.getSregs().cr3
      const pa = translate(read, cr3, rsp)
      const cs = pa === undefined ? undefined : translate(read, cr3, rsp + 8n)
      if (pa === undefined || cs === undefined) return
      const frameCs = read(cs)
      if (frameCs !== 0x10n && frameCs !== 0x33n) return // not an interrupt frame
      const rip = frameCs === 0x33n ? 0n : read(pa) // user mode counts as 0
      counts.set(rip, (counts.get(rip) ?? 0) + 1)
      if (++total % 200 === 0) dump() // also when the run is killed
    } catch {
      // a stack outside RAM: not a sample
    }
  }
}
