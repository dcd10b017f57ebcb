// A process whose vCPU thread carries a seccomp filter (vcpu_seccomp.cc), for seccomp.kvm.test.ts.
// The guest loops on `out 0x80, al`; every exit comes to JavaScript. argv[2]:
//   profile: vmm's filters (process and vCPU, @vmm/host applySeccomp); 20,000 exits, then every
//            vCPU state ioctl vmm issues, then a clean exit printing "ok <exits>"
//   running: a vCPU filter that allows KVM_RUN but not KVM_GET_REGS, set while the guest runs;
//            after more exits a register read on the vCPU thread is denied (exit 159)
import { applySeccomp, SECCOMP_EXIT_CODE } from '@vmm/host'
import { native } from '../../host/dist/native.js'
import { compile, RET } from '../../host/dist/seccomp/bpf.js'
import { SYSCALLS } from '../../host/dist/seccomp/syscalls.js'
import { Kvm } from '../dist/index.js'

const LOAD = 0x1000
const kvm = Kvm.open()
const vm = kvm.createVm()
vm.createIrqchip()
const ram = vm.mapMemory(0x100000)
new Uint8Array(ram.buffers[0]).set([0xe6, 0x80, 0xeb, 0xfc], LOAD) // 1: out %al, $0x80; jmp 1b
vm.setUserMemoryRegion({ slot: 0, guestAddress: 0, size: ram.size, ram })
const vcpu = vm.createVcpu(0)
const s = vcpu.getSregs()
s.cs.base = 0n
s.cs.selector = 0
vcpu.setSregs(s)
vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(LOAD), rflags: 2n })

const mode = process.argv[2]
if (mode === 'profile')
  applySeccomp({ virtualMachine: { vcpuSeccomp: { confine: (p) => vm.setVcpuFilter(p) } } })
let exits = 0
const target = mode === 'profile' ? 20_000 : 2_000
const result = vcpu.run({
  pioIn: (_p, d) => d.fill(0),
  pioOut() {
    exits++
    if (mode === 'running' && exits === target) {
      // The vCPU thread is parked on this exit: it installs now (RunOnVcpu) or before its next entry.
      const names = []
      for (const [name, nr] of Object.entries(SYSCALLS)) names[nr] = name
      native().seccompReporter(names, SECCOMP_EXIT_CODE)
      const KVM_RUN = 0xae80
      const allowRunOnly = compile(
        [
          'futex',
          'write',
          'gettid',
          'exit_group',
          'rt_sigreturn',
          'sched_yield',
          // The allocator on the vCPU thread (its arena, state blobs), as in vmm's own vCPU profile.
          'mmap',
          'munmap',
          'mprotect',
          'madvise',
          { name: 'prctl', when: [[{ arg: 0, value: 16 }]] },
          { name: 'ioctl', when: [[{ arg: 1, value: KVM_RUN }]] },
        ],
        { defaultAction: RET.TRAP | 2, trapData: 2 },
      )
      setTimeout(() => vm.setVcpuFilter(allowRunOnly), 0)
    }
    if (mode === 'running' && exits === target * 4) {
      process.stdout.write('reading registers\n')
      vcpu.getRegs() // KVM_GET_REGS on the vCPU thread: denied
      process.stdout.write('read them (the filter did not hold)\n')
    }
  },
  mmioRead: (_a, d) => d.fill(0),
  mmioWrite() {},
  onExit: () => 'stop',
})
// Stop after `target` exits (or let the running case's denial end the process).
const done = setInterval(() => {
  if (mode === 'profile' && exits >= target) {
    clearInterval(done)
    vcpu.kick()
  }
}, 10)
await result
clearInterval(done)
vcpu.getRegs()
vcpu.getSregs()
vcpu.getFpu()
vcpu.getMsrs([0x10, 0x174])
vcpu.getCpuid()
vcpu.getLapic()
vcpu.getMpState()
vcpu.getVcpuEvents()
vcpu.getTscKhz()
vcpu.getXsave()
vcpu.getXcrs()
vcpu.getDebugRegs()
vm.dispose()
kvm.close()
console.log(`ok ${exits >= target ? 'enough' : exits} exits`)
