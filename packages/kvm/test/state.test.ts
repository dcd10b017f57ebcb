// vCPU and VM state as whole kernel structs: the layout tables against the kernel headers, and on
// the real /dev/kvm every get/set pair round-trips (set what you got, get again: equal; change one
// field: see it), and what the host refuses comes back as a KvmSystemError naming the ioctl.
import { afterEach, describe, expect, it } from 'vitest'
import { isKvmSystemError, MpState } from '../src/index.js'
import { native } from '../src/native.js'
import { decode, encode } from '../src/state/codec.js'
import * as layouts from '../src/state/layouts.js'
import { type Guest, handler, kvmUnavailable, realMode, realModeGuest } from './harness.js'

const {
  KVM_CPUID_ENTRY2,
  KVM_DEBUGREGS,
  KVM_DTABLE,
  KVM_FPU,
  KVM_IOAPIC_STATE,
  KVM_IRQCHIP_SIZE,
  KVM_IRQCHIP_STATE_OFFSET,
  KVM_LAPIC_STATE,
  KVM_MP_STATE,
  KVM_MSR_ENTRY,
  KVM_MSRS_HEADER,
  KVM_PIC_STATE,
  KVM_PIT_CHANNEL_STATE,
  KVM_PIT_STATE2,
  KVM_REGS,
  KVM_SEGMENT,
  KVM_SREGS,
  KVM_VCPU_EVENTS,
  KVM_XCRS,
  KVM_XSAVE_SIZE,
} = layouts

let guest: Guest | undefined
afterEach(() => {
  guest?.dispose()
  guest = undefined
})

/** The KvmSystemError `fn` throws (fails the test when it throws none, or something else). */
function systemError(fn: () => unknown): Record<string, unknown> {
  try {
    fn()
  } catch (e) {
    expect(isKvmSystemError(e)).toBe(true)
    expect(e).toMatchObject({ syscall: 'ioctl', code: expect.any(String), errno: expect.any(Number) })
    return e as Record<string, unknown>
  }
  throw new Error('expected a KvmSystemError')
}

describe('layout tables', () => {
  it('have the size sizeof() gives each struct in the uapi headers', () => {
    const sizes = native().structSizes
    expect({
      kvm_regs: KVM_REGS.size,
      kvm_sregs: KVM_SREGS.size,
      kvm_segment: KVM_SEGMENT.size,
      kvm_dtable: KVM_DTABLE.size,
      kvm_fpu: KVM_FPU.size,
      kvm_vcpu_events: KVM_VCPU_EVENTS.size,
      kvm_lapic_state: KVM_LAPIC_STATE.size,
      kvm_mp_state: KVM_MP_STATE.size,
      kvm_xsave: KVM_XSAVE_SIZE,
      kvm_xcrs: KVM_XCRS.size,
      kvm_debugregs: KVM_DEBUGREGS.size,
      kvm_msr_entry: KVM_MSR_ENTRY.size,
      kvm_msrs: KVM_MSRS_HEADER.size,
      kvm_cpuid_entry2: KVM_CPUID_ENTRY2.size,
      kvm_irqchip: KVM_IRQCHIP_SIZE,
      kvm_pic_state: KVM_PIC_STATE.size,
      kvm_ioapic_state: KVM_IOAPIC_STATE.size,
      kvm_pit_state2: KVM_PIT_STATE2.size,
      kvm_pit_channel_state: KVM_PIT_CHANNEL_STATE.size,
    }).toEqual(sizes)
  })

  it('put each field at its C offset, little-endian, and decode what they encode', () => {
    const regs = Object.fromEntries(Object.keys(KVM_REGS.fields).map((k, i) => [k, BigInt(i + 1) << 40n]))
    const bytes = encode(KVM_REGS, regs as never)
    const dv = new DataView(bytes.buffer)
    expect(dv.getBigUint64(0, true)).toBe(1n << 40n) // rax
    expect(dv.getBigUint64(128, true)).toBe(17n << 40n) // rip
    expect(decode(KVM_REGS, bytes)).toEqual(regs)

    const seg = {
      base: 0x1234n,
      limit: 0xffff,
      selector: 0x08,
      type: 11,
      present: 1,
      dpl: 3,
      db: 0,
      s: 1,
      l: 1,
      g: 1,
      avl: 0,
      unusable: 0,
    }
    const s = encode(KVM_SREGS, { cs: seg, efer: 0x500n, interrupt_bitmap: [0n, 2n, 0n, 0n] } as never)
    const sv = new DataView(s.buffer)
    expect(sv.getUint16(12, true)).toBe(0x08) // cs.selector
    expect(sv.getUint8(16)).toBe(3) // cs.dpl
    expect(sv.getBigUint64(264, true)).toBe(0x500n) // efer
    expect(sv.getBigUint64(288, true)).toBe(2n) // interrupt_bitmap[1]
    expect(decode(KVM_SREGS, s).cs).toEqual(seg)

    const ev = encode(KVM_VCPU_EVENTS, {
      exception: { injected: 1, nr: 14, hasErrorCode: 1, pending: 0, errorCode: 0xdead },
    } as never)
    expect([...ev.subarray(0, 8)]).toEqual([1, 14, 1, 0, 0xad, 0xde, 0, 0])
  })

  it('leave what a value does not name as it was (so a set over a got struct keeps the rest)', () => {
    const got = new Uint8Array(KVM_VCPU_EVENTS.size).fill(0x77)
    encode(KVM_VCPU_EVENTS, { sipiVector: 5 } as never, got)
    expect(new DataView(got.buffer).getUint32(16, true)).toBe(5)
    expect(got[0]).toBe(0x77) // exception untouched
    expect(got[24]).toBe(0x77) // smi, not modelled: untouched
  })
})

describe.skipIf(kvmUnavailable)('vCPU state round trips (real /dev/kvm)', () => {
  it('regs, sregs, FPU, MP state, events: set what was got, get it again, change one field', () => {
    guest = realModeGuest('hlt')
    const v = guest.vm.createVcpu(0)
    realMode(v)

    const regs = v.getRegs()
    v.setRegs(regs)
    expect(v.getRegs()).toEqual(regs)
    v.setRegs({ ...regs, rbx: 0x1122_3344_5566_7788n })
    expect(v.getRegs()).toEqual({ ...regs, rbx: 0x1122_3344_5566_7788n })

    const sregs = v.getSregs()
    v.setSregs(sregs)
    expect(v.getSregs()).toEqual(sregs)
    v.setSregs({ ...sregs, cr2: 0xdead_b000n })
    expect(v.getSregs().cr2).toBe(0xdead_b000n)

    const fpu = v.getFpu()
    v.setFpu(fpu)
    expect(v.getFpu()).toEqual(fpu)
    const xmm = new Uint8Array(256)
    xmm.set([1, 2, 3, 4], 16) // xmm1
    v.setFpu({ ...fpu, xmm, fcw: 0x27f })
    const fpu2 = v.getFpu()
    expect([...fpu2.xmm.subarray(16, 20)]).toEqual([1, 2, 3, 4])
    expect(fpu2.fcw).toBe(0x27f)

    const mp = v.getMpState()
    v.setMpState(mp)
    expect(v.getMpState()).toBe(mp)

    const events = v.getVcpuEvents()
    v.setVcpuEvents(events)
    expect(v.getVcpuEvents()).toEqual(events)
    v.setVcpuEvents({ nmi: { injected: 0, pending: 0, masked: 1 } })
    expect(v.getVcpuEvents().nmi.masked).toBe(1)
  })

  it('MSRs and CPUID through their struct arrays; an MSR KVM lacks is named', () => {
    guest = realModeGuest('hlt')
    const v = guest.vm.createVcpu(0)
    v.setCpuid(guest.kvm.supportedCpuid())
    // KVM adjusts a few bits of what it was given (OSXSAVE from CR4, the APIC bit): what it holds
    // now is what must round-trip.
    const cpuid = v.getCpuid()
    v.setCpuid(cpuid)
    expect(v.getCpuid()).toEqual(cpuid)
    const leaf0 = cpuid.findIndex((e) => e.function === 0)
    const fewer = cpuid.map((e, i) => (i === leaf0 ? { ...e, eax: 1 } : e)) // highest basic leaf 1
    v.setCpuid(fewer)
    expect(v.getCpuid()[leaf0]!.eax).toBe(1)

    const IA32_SYSENTER_CS = 0x174
    const [cs] = v.getMsrs([IA32_SYSENTER_CS])
    v.setMsrs([{ index: IA32_SYSENTER_CS, data: cs! }])
    expect(v.getMsrs([IA32_SYSENTER_CS])).toEqual([cs])
    v.setMsrs([{ index: IA32_SYSENTER_CS, data: 0x10n }])
    expect(v.getMsrs([IA32_SYSENTER_CS])).toEqual([0x10n])
    expect(() => v.getMsrs([IA32_SYSENTER_CS, 0xdead_0000])).toThrow(
      expect.objectContaining({
        code: 'EINVAL',
        ioctl: 'KVM_GET_MSRS',
        message: 'KVM_GET_MSRS: MSR 0xdead0000 is not supported',
      }),
    )
  })

  it('LAPIC and MP state (with the in-kernel irqchip), both refused without it', () => {
    guest = realModeGuest('hlt', { irqchip: true })
    const v = guest.vm.createVcpu(0)
    const lapic = v.getLapic()
    expect(lapic.byteLength).toBe(1024)
    v.setLapic(lapic)
    expect(v.getLapic()).toEqual(lapic)
    const changed = new Uint8Array(lapic)
    new DataView(changed.buffer).setUint32(0x80, 0x20, true) // TPR (SDM Vol. 3A §11.8.3.1)
    v.setLapic(changed)
    expect(new DataView(v.getLapic().buffer).getUint32(0x80, true)).toBe(0x20)
    // With the LAPIC in the kernel a vCPU may be put in another MP state than runnable.
    v.setMpState(MpState.Halted)
    expect(v.getMpState()).toBe(MpState.Halted)
    guest.dispose()

    guest = realModeGuest('hlt')
    const plain = guest.vm.createVcpu(0)
    expect(systemError(() => plain.getLapic())).toMatchObject({ ioctl: 'KVM_GET_LAPIC' })
    expect(systemError(() => plain.setMpState(MpState.Halted))).toMatchObject({
      ioctl: 'KVM_SET_MP_STATE',
      code: 'EINVAL',
    })
  })

  it('XSAVE, XCRS and debug registers as raw structs', () => {
    guest = realModeGuest('hlt')
    const v = guest.vm.createVcpu(0)

    const dr = v.getDebugRegs()
    expect(dr.byteLength).toBe(KVM_DEBUGREGS.size)
    v.setDebugRegs(dr)
    expect(v.getDebugRegs()).toEqual(dr)
    const dr0 = encode(
      KVM_DEBUGREGS,
      { ...decode(KVM_DEBUGREGS, dr), db: [0x1000n, 0n, 0n, 0n] },
      new Uint8Array(dr),
    )
    v.setDebugRegs(dr0)
    expect(decode(KVM_DEBUGREGS, v.getDebugRegs()).db[0]).toBe(0x1000n)

    const xsave = v.getXsave()
    expect(xsave.byteLength).toBeGreaterThanOrEqual(KVM_XSAVE_SIZE)
    v.setXsave(xsave)
    expect(v.getXsave()).toEqual(xsave)
    // One field of the legacy region (FXSAVE layout; SDM Vol. 1 §10.5.1): the x87 control word at
    // byte 0, marked present in XSTATE_BV (byte 512, bit 0; §13.4.2) so it is not taken as init.
    const changed = new Uint8Array(xsave)
    const cv = new DataView(changed.buffer)
    cv.setUint16(0, 0x27f, true)
    cv.setBigUint64(512, cv.getBigUint64(512, true) | 1n, true)
    v.setXsave(changed)
    expect(new DataView(v.getXsave().buffer).getUint16(0, true)).toBe(0x27f)
    expect(v.getFpu().fcw).toBe(0x27f)

    const xcrs = v.getXcrs()
    v.setXcrs(xcrs)
    expect(v.getXcrs()).toEqual(xcrs)
    const x = decode(KVM_XCRS, xcrs)
    expect(x.nrXcrs).toBeGreaterThanOrEqual(1)
    expect(x.xcrs[0]!.xcr).toBe(0)
    expect(x.xcrs[0]!.value & 1n).toBe(1n) // XCR0.x87 is always set (SDM Vol. 1 §13.3)
    // XCR0 without x87 is invalid: the host refuses it.
    const bad = encode(KVM_XCRS, { ...x, xcrs: [{ xcr: 0, value: 0n }] }, new Uint8Array(xcrs))
    expect(systemError(() => v.setXcrs(bad))).toMatchObject({ ioctl: 'KVM_SET_XCRS', code: 'EINVAL' })
    expect(() => v.setXcrs(new Uint8Array(8))).toThrow(RangeError)
  })
})

describe.skipIf(kvmUnavailable)('VM state round trips (real /dev/kvm)', () => {
  it('irqchip: PIC master, PIC slave, IOAPIC; KVM_GET_IRQCHIP refused without one', () => {
    guest = realModeGuest('hlt')
    expect(systemError(() => guest!.vm.getIrqchip(0))).toMatchObject({ ioctl: 'KVM_GET_IRQCHIP' })
    guest.dispose()

    guest = realModeGuest('hlt', { irqchip: true })
    const vm = guest.vm
    for (const chip of [0, 1, 2] as const) {
      const s = vm.getIrqchip(chip)
      expect(s.byteLength).toBe(KVM_IRQCHIP_SIZE)
      expect(new DataView(s.buffer).getUint32(0, true)).toBe(chip)
      vm.setIrqchip(chip, s)
      expect(vm.getIrqchip(chip)).toEqual(s)
    }
    const ioapic = decode(KVM_IOAPIC_STATE, vm.getIrqchip(2).subarray(KVM_IRQCHIP_STATE_OFFSET))
    expect(ioapic.baseAddress).toBe(0xfec0_0000n)

    const master = vm.getIrqchip(0)
    const pic = decode(KVM_PIC_STATE, master.subarray(KVM_IRQCHIP_STATE_OFFSET))
    const changed = new Uint8Array(master)
    encode(KVM_PIC_STATE, { ...pic, imr: 0xa5 }, changed.subarray(KVM_IRQCHIP_STATE_OFFSET))
    vm.setIrqchip(0, changed)
    expect(decode(KVM_PIC_STATE, vm.getIrqchip(0).subarray(KVM_IRQCHIP_STATE_OFFSET)).imr).toBe(0xa5)
    expect(decode(KVM_PIC_STATE, vm.getIrqchip(1).subarray(KVM_IRQCHIP_STATE_OFFSET)).imr).not.toBe(0xa5)
    expect(() => vm.setIrqchip(0, new Uint8Array(16))).toThrow(RangeError)
  })

  it('PIT2; KVM_GET_PIT2 refused without a PIT', () => {
    guest = realModeGuest('hlt', { irqchip: true })
    expect(systemError(() => guest!.vm.getPit2())).toMatchObject({ ioctl: 'KVM_GET_PIT2' })
    guest.vm.createPit2()
    const pit = guest.vm.getPit2()
    expect(pit.byteLength).toBe(KVM_PIT_STATE2.size)
    guest.vm.setPit2(pit)
    const again = decode(KVM_PIT_STATE2, guest.vm.getPit2())
    const before = decode(KVM_PIT_STATE2, pit)
    // count_load_time is the host time of the (re)load, so a set moves it: compare the rest.
    const noTime = (s: typeof before) => s.channels.map(({ countLoadTime: _, ...c }) => c)
    expect(noTime(again)).toEqual(noTime(before))
    const s = decode(KVM_PIT_STATE2, pit)
    s.channels[0]!.count = 0x1234
    guest.vm.setPit2(encode(KVM_PIT_STATE2, s, new Uint8Array(pit)))
    expect(decode(KVM_PIT_STATE2, guest.vm.getPit2()).channels[0]!.count).toBe(0x1234)
  })

  it('dirty log: the pages a guest wrote, cleared by reading; refused for a slot without logging', async () => {
    guest = realModeGuest('mov byte ptr [0x5000], 1\nmov byte ptr [0x7fff], 2\nhlt', { memSize: 0x10000 })
    const { vm, ram } = guest
    expect(systemError(() => vm.getDirtyLog(0))).toMatchObject({ ioctl: 'KVM_GET_DIRTY_LOG', code: 'ENOENT' })
    vm.setUserMemoryRegion({ slot: 0, guestAddress: 0, size: ram.size, ram, logDirtyPages: true })
    const v = vm.createVcpu(0)
    realMode(v)
    expect(await v.run(handler({}))).toEqual({ kind: 'hlt' })
    const bitmap = vm.getDirtyLog(0)
    expect(bitmap.byteLength).toBe(8) // 16 pages, rounded up to 64 bits
    const dirty = [...Array(16).keys()].filter((p) => (bitmap[p >> 3]! >> (p & 7)) & 1)
    expect(dirty).toEqual([5, 7])
    expect([...vm.getDirtyLog(0)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0])
  })

  it('clock: set what was got', () => {
    guest = realModeGuest('hlt')
    const t = guest.vm.getClock()
    guest.vm.setClock(t + 1_000_000_000n)
    expect(guest.vm.getClock()).toBeGreaterThanOrEqual(t + 1_000_000_000n)
  })
})
