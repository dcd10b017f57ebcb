// What the `linux` component asks of the hypervisor, through its optional parts only: the boot
// policy decides whether a gzip initrd is inflated by the VMM, and the x86 parts get each vCPU's
// CPUID, boot MSRs, LAPIC and FPU. A hypervisor without them gets neither, and the boot goes on.

import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import {
  type CpuidEntry,
  FlatMemory,
  guestAddress,
  RamBacking,
  type Sregs,
  type Vcpu,
  type VirtualMachine,
  type X86VcpuFeatures,
} from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { describe, expect, it } from 'vitest'
import { defaultLayout, Linux, type LinuxConfig } from '../src/index.js'
import { newc } from './cpio.js'
import { elf64Kernel } from './fake-kernels.js'

const CPIO = newc([['init', new TextEncoder().encode('an uncompressed cpio stands in here '.repeat(100))]])

function setup(vm: VirtualMachine, vcpus: Vcpu[]) {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-linux-parts-'))
  const initrd = join(dir, 'initrd.gz')
  writeFileSync(initrd, gzipSync(CPIO))
  const config: LinuxConfig = {
    kernel: elf64Kernel(),
    initrd,
    cmdline: 'console=ttyS0',
    entry: 'auto',
    layout: defaultLayout,
    cpu: { hide: ['popcnt'] },
  }
  const memory = new FlatMemory(new RamBacking([new ArrayBuffer(64 << 20)], 64 << 20))
  const linux = new Linux(config, vm)
  linux.load({ memory, vcpus, kernelCmdline: [] })
  const { address, size } = linux.plan!.initrd!
  const bytes = new Uint8Array(size)
  memory.read(guestAddress(address), bytes)
  return bytes
}

/** A vCPU that takes any state (the test hypervisor's only runs real mode), with an optional x86 part. */
function vcpu(id: number, sregs: Sregs, x86?: X86VcpuFeatures): Vcpu {
  let regs = new TestHypervisor().createVm().createVcpu(0).getRegs()
  return {
    id,
    getRegs: () => regs,
    setRegs: (r) => {
      regs = r
    },
    getSregs: () => sregs,
    setSregs: () => {},
    run: () => Promise.resolve({ kind: 'hlt' }),
    kick: () => {},
    ...(x86 ? { x86 } : {}),
  }
}

describe('the linux component and the hypervisor parts', () => {
  const sregs = new TestHypervisor().createVm().createVcpu(0).getSregs()

  it('loads a gzip initrd as it is where the hypervisor has no boot policy', () => {
    const vm = new TestHypervisor().createVm()
    const bytes = setup(vm, [vcpu(0, sregs)])
    expect([...bytes.subarray(0, 2)]).toEqual([0x1f, 0x8b])
  })

  it('inflates it where the hypervisor prefers an uncompressed initrd', () => {
    const vm = Object.assign(new TestHypervisor().createVm(), {
      bootPolicy: { prefersUncompressedInitrd: true },
    })
    expect(setup(vm, [vcpu(0, sregs)])).toEqual(CPIO)
  })

  it("sets each vCPU's CPUID from the VM's supported table through vcpu.x86", () => {
    const supported: CpuidEntry[] = [
      { function: 1, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 1 << 23, edx: 0 },
    ]
    const set: { id: number; cpuid: readonly CpuidEntry[] }[] = []
    const msrs: number[] = []
    const x86 = (id: number): X86VcpuFeatures =>
      ({
        setCpuid: (cpuid: readonly CpuidEntry[]) => set.push({ id, cpuid }),
        setMsrs: (e: readonly { index: number }[]) => msrs.push(e.length),
        getLapic: () => new Uint8Array(1024),
        setLapic: () => {},
        getFpu: () => ({ fcw: 0, mxcsr: 0 }),
        setFpu: () => {},
      }) as unknown as X86VcpuFeatures
    const vm = Object.assign(new TestHypervisor().createVm(), { x86: { supportedCpuid: () => supported } })
    setup(vm, [vcpu(0, sregs, x86(0)), vcpu(1, sregs, x86(1))])
    expect(set.map((s) => s.id)).toEqual([0, 1])
    const leaf1 = set[1]!.cpuid.find((e) => e.function === 1)!
    expect(leaf1.ebx >>> 24).toBe(1) // its own APIC id
    expect(leaf1.ecx & (1 << 23)).toBe(0) // popcnt hidden as the manifest asked
    expect(msrs).toEqual([msrs[0], msrs[0]])
  })

  it('leaves the 8259s as a firmware does, through vm.x86.pics, where the VM has them', () => {
    let inits = 0
    const vm = Object.assign(new TestHypervisor().createVm(), {
      x86: { supportedCpuid: () => [], pics: { firmwareInit: () => void inits++ } },
    })
    setup(vm, [vcpu(0, sregs)])
    expect(inits).toBe(1)
  })
})
