// The TypeScript side of bench/exits: the same guest and loop as loop.c, with each exit handled by
// a port (or MMIO) device in JavaScript behind the @vmm/kvm exit path. Prints "<exits> <seconds>".
// `--seccomp`: under vmm's seccomp filters (@vmm/host applySeccomp: the process filter and the
// vCPU thread's own), as `vmm run` runs by default, to measure what they cost per exit.
import { readFileSync } from 'node:fs'
import { Kvm } from '@vmm/kvm'
import { LOAD, MEM_SIZE } from './guests.mjs'

const [path, flag] = process.argv.slice(2)
const kvm = Kvm.open()
const vm = kvm.createVm()
const ram = vm.mapMemory(MEM_SIZE)
new Uint8Array(ram.buffers[0]).set(readFileSync(path), LOAD)
vm.setUserMemoryRegion({ slot: 0, guestAddress: 0, size: MEM_SIZE, ram })
const vcpu = vm.createVcpu(0)
if (flag === '--seccomp') {
  const { applySeccomp } = await import('@vmm/host')
  applySeccomp({ virtualMachine: { vcpuSeccomp: { confine: (program) => vm.setVcpuFilter(program) } } })
}
const sregs = vcpu.getSregs()
sregs.cs.base = 0n
sregs.cs.selector = 0
vcpu.setSregs(sregs)
vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(LOAD), rflags: 2n })

let exits = 0
let lastByte = 0
const device = {
  pioIn(_port, data) {
    data.fill(0)
    exits++
  },
  pioOut(_port, data) {
    lastByte = data[0]
    exits++
  },
  mmioRead(_addr, data) {
    data.fill(0)
    exits++
  },
  mmioWrite(_addr, data) {
    lastByte = data[0]
    exits++
  },
  onExit: (exit) => {
    if (exit.kind !== 'hlt') throw new Error(`unexpected exit ${JSON.stringify(exit)}`)
    return 'stop'
  },
}
const t0 = process.hrtime.bigint()
await vcpu.run(device)
const seconds = Number(process.hrtime.bigint() - t0) / 1e9
vm.dispose()
kvm.close()
// lastByte keeps the device's read of the data honest (the C loop does the same with a volatile).
console.log(`${exits} ${seconds.toFixed(6)} ${lastByte}`)
