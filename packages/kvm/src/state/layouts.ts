// The layout of every kernel struct @vmm/kvm exchanges with KVM, one table per struct, each with
// the C declaration it follows (include/uapi/linux/kvm.h, arch/x86/include/uapi/asm/kvm.h;
// x86-64, little-endian). The native module copies each struct whole; nothing else knows offsets.
// A test checks every size against sizeof() as the native module's compiler sees the headers.
import type { CpuidEntry, DescriptorTable, Regs, Segment, Sregs } from '@vmm/core'
import type { Fpu, VcpuEvents } from '../types.js'
import { array, bytes, type Fields, struct, u8, u16, u32, u64 } from './codec.js'

/**
 * struct kvm_regs { __u64 rax, rbx, rcx, rdx; __u64 rsi, rdi, rsp, rbp;
 *                   __u64 r8, r9, r10, r11, r12, r13, r14, r15; __u64 rip, rflags; }  (144 bytes)
 */
export const KVM_REGS = struct<Regs>(144, {
  rax: [0, u64],
  rbx: [8, u64],
  rcx: [16, u64],
  rdx: [24, u64],
  rsi: [32, u64],
  rdi: [40, u64],
  rsp: [48, u64],
  rbp: [56, u64],
  r8: [64, u64],
  r9: [72, u64],
  r10: [80, u64],
  r11: [88, u64],
  r12: [96, u64],
  r13: [104, u64],
  r14: [112, u64],
  r15: [120, u64],
  rip: [128, u64],
  rflags: [136, u64],
})

/**
 * struct kvm_segment { __u64 base; __u32 limit; __u16 selector;
 *                      __u8 type, present, dpl, db, s, l, g, avl; __u8 unusable; __u8 padding; }
 * (24 bytes)
 */
export const KVM_SEGMENT = struct<Segment>(24, {
  base: [0, u64],
  limit: [8, u32],
  selector: [12, u16],
  type: [14, u8],
  present: [15, u8],
  dpl: [16, u8],
  db: [17, u8],
  s: [18, u8],
  l: [19, u8],
  g: [20, u8],
  avl: [21, u8],
  unusable: [22, u8],
})

/** struct kvm_dtable { __u64 base; __u16 limit; __u16 padding[3]; }  (16 bytes) */
export const KVM_DTABLE = struct<DescriptorTable>(16, { base: [0, u64], limit: [8, u16] })

/**
 * struct kvm_sregs { struct kvm_segment cs, ds, es, fs, gs, ss; struct kvm_segment tr, ldt;
 *                    struct kvm_dtable gdt, idt; __u64 cr0, cr2, cr3, cr4, cr8; __u64 efer;
 *                    __u64 apic_base; __u64 interrupt_bitmap[(KVM_NR_INTERRUPTS + 63) / 64]; }
 * (312 bytes; KVM_NR_INTERRUPTS is 256)
 */
export const KVM_SREGS = struct<Sregs>(312, {
  cs: [0, KVM_SEGMENT],
  ds: [24, KVM_SEGMENT],
  es: [48, KVM_SEGMENT],
  fs: [72, KVM_SEGMENT],
  gs: [96, KVM_SEGMENT],
  ss: [120, KVM_SEGMENT],
  tr: [144, KVM_SEGMENT],
  ldt: [168, KVM_SEGMENT],
  gdt: [192, KVM_DTABLE],
  idt: [208, KVM_DTABLE],
  cr0: [224, u64],
  cr2: [232, u64],
  cr3: [240, u64],
  cr4: [248, u64],
  cr8: [256, u64],
  efer: [264, u64],
  apic_base: [272, u64],
  interrupt_bitmap: [280, array(u64, 4)],
})

/**
 * struct kvm_fpu { __u8 fpr[8][16]; __u16 fcw; __u16 fsw; __u8 ftwx; __u8 pad1; __u16 last_opcode;
 *                  __u64 last_ip; __u64 last_dp; __u8 xmm[16][16]; __u32 mxcsr; __u32 pad2; }
 * (416 bytes)
 */
export const KVM_FPU = struct<Fpu>(416, {
  fpr: [0, bytes(128)],
  fcw: [128, u16],
  fsw: [130, u16],
  ftwx: [132, u8],
  lastOpcode: [134, u16],
  lastIp: [136, u64],
  lastDp: [144, u64],
  xmm: [152, bytes(256)],
  mxcsr: [408, u32],
})

/**
 * struct kvm_vcpu_events {
 *   struct { __u8 injected, nr, has_error_code, pending; __u32 error_code; } exception;  // 0
 *   struct { __u8 injected, nr, soft, shadow; } interrupt;                             // 8
 *   struct { __u8 injected, pending, masked, pad; } nmi;                               // 12
 *   __u32 sipi_vector;                                                                 // 16
 *   __u32 flags;                                                                       // 20
 *   struct { __u8 smm, pending, smm_inside_nmi, latched_init; } smi;                   // 24
 *   struct { __u8 pending; } triple_fault;                                             // 28
 *   __u8 reserved[26]; __u8 exception_has_payload; __u64 exception_payload;            // 29, 55, 56
 * };  (64 bytes)
 * VcpuEvents models the first five; a set writes only those over the struct it got, so the rest
 * (smi, payload) keeps the kernel's values.
 */
export const KVM_VCPU_EVENTS = struct<VcpuEvents>(64, {
  exception: [
    0,
    struct<VcpuEvents['exception']>(8, {
      injected: [0, u8],
      nr: [1, u8],
      hasErrorCode: [2, u8],
      pending: [3, u8],
      errorCode: [4, u32],
    }),
  ],
  interrupt: [
    8,
    struct<VcpuEvents['interrupt']>(4, { injected: [0, u8], nr: [1, u8], soft: [2, u8], shadow: [3, u8] }),
  ],
  nmi: [12, struct<VcpuEvents['nmi']>(4, { injected: [0, u8], pending: [1, u8], masked: [2, u8] })],
  sipiVector: [16, u32],
  flags: [20, u32],
})

/** KVM_VCPUEVENT_VALID_* (arch/x86/include/uapi/asm/kvm.h): which parts a KVM_SET_VCPU_EVENTS sets. */
export const VcpuEventValid = {
  NmiPending: 0x1,
  SipiVector: 0x2,
  Shadow: 0x4,
  Smm: 0x8,
  Payload: 0x10,
} as const

/** struct kvm_lapic_state { char regs[KVM_APIC_REG_SIZE]; }  (1024 bytes: the LAPIC register page) */
export const KVM_LAPIC_STATE = struct<{ regs: Uint8Array }>(1024, { regs: [0, bytes(1024)] })

/** struct kvm_mp_state { __u32 mp_state; }  (KVM_MP_STATE_*) */
export const KVM_MP_STATE = struct<{ mpState: number }>(4, { mpState: [0, u32] })

/** struct kvm_msr_entry { __u32 index; __u32 reserved; __u64 data; }  (16 bytes) */
export const KVM_MSR_ENTRY = struct<{ index: number; data: bigint }>(16, { index: [0, u32], data: [8, u64] })

/**
 * struct kvm_msrs { __u32 nmsrs; __u32 pad; struct kvm_msr_entry entries[]; }  (8-byte header,
 * then nmsrs entries)
 */
export const KVM_MSRS_HEADER = struct<{ nmsrs: number }>(8, { nmsrs: [0, u32] })

/** A whole struct kvm_msrs for `entries`. */
export function encodeMsrs(entries: readonly { index: number; data?: bigint }[]): Uint8Array {
  const out = new Uint8Array(KVM_MSRS_HEADER.size + entries.length * KVM_MSR_ENTRY.size)
  const v = new DataView(out.buffer)
  KVM_MSRS_HEADER.write(v, 0, { nmsrs: entries.length })
  for (const [i, e] of entries.entries())
    KVM_MSR_ENTRY.write(v, KVM_MSRS_HEADER.size + i * KVM_MSR_ENTRY.size, {
      index: e.index,
      data: e.data ?? 0n,
    })
  return out
}

/** The entries of a struct kvm_msrs. */
export function decodeMsrs(msrs: Uint8Array): { index: number; data: bigint }[] {
  const v = new DataView(msrs.buffer, msrs.byteOffset, msrs.byteLength)
  const n = KVM_MSRS_HEADER.read(v, 0).nmsrs
  return Array.from({ length: n }, (_, i) =>
    KVM_MSR_ENTRY.read(v, KVM_MSRS_HEADER.size + i * KVM_MSR_ENTRY.size),
  )
}

/**
 * struct kvm_cpuid_entry2 { __u32 function; __u32 index; __u32 flags; __u32 eax; __u32 ebx;
 *                           __u32 ecx; __u32 edx; __u32 padding[3]; }  (40 bytes)
 * struct kvm_cpuid2 (its count and a flexible array of these) is built by the native module.
 */
export const KVM_CPUID_ENTRY2 = struct<CpuidEntry>(40, {
  function: [0, u32],
  index: [4, u32],
  flags: [8, u32],
  eax: [12, u32],
  ebx: [16, u32],
  ecx: [20, u32],
  edx: [24, u32],
})

export function encodeCpuid(entries: readonly CpuidEntry[]): Uint8Array {
  const out = new Uint8Array(entries.length * KVM_CPUID_ENTRY2.size)
  const v = new DataView(out.buffer)
  for (const [i, e] of entries.entries()) KVM_CPUID_ENTRY2.write(v, i * KVM_CPUID_ENTRY2.size, e)
  return out
}

export function decodeCpuid(entries: ArrayBuffer): CpuidEntry[] {
  const v = new DataView(entries)
  return Array.from({ length: entries.byteLength / KVM_CPUID_ENTRY2.size }, (_, i) =>
    KVM_CPUID_ENTRY2.read(v, i * KVM_CPUID_ENTRY2.size),
  )
}

// The structs below travel as raw bytes (Vcpu.getXsave(), Vm.getIrqchip(), ...): a snapshot saves
// and restores them whole. The layouts say what is inside, for whoever needs to read a field.

/**
 * struct kvm_xsave { __u32 region[1024]; __u32 extra[]; }  (4096 bytes, or KVM_CAP_XSAVE2's size:
 * the XSAVE area, laid out as CPUID leaf 0xD of the host says; SDM Vol. 1 §13.4)
 */
export const KVM_XSAVE_SIZE = 4096

/** struct kvm_xcr { __u32 xcr; __u32 reserved; __u64 value; }  (16 bytes) */
export const KVM_XCR = struct<{ xcr: number; value: bigint }>(16, { xcr: [0, u32], value: [8, u64] })

/**
 * struct kvm_xcrs { __u32 nr_xcrs; __u32 flags; struct kvm_xcr xcrs[KVM_MAX_XCRS]; __u64 padding[16]; }
 * (392 bytes; KVM_MAX_XCRS is 16)
 */
export const KVM_XCRS = struct<{ nrXcrs: number; flags: number; xcrs: { xcr: number; value: bigint }[] }>(
  392,
  {
    nrXcrs: [0, u32],
    flags: [4, u32],
    xcrs: [8, array(KVM_XCR, 16)],
  },
)

/** struct kvm_debugregs { __u64 db[4]; __u64 dr6; __u64 dr7; __u64 flags; __u64 reserved[9]; }  (128 bytes) */
export const KVM_DEBUGREGS = struct<{ db: bigint[]; dr6: bigint; dr7: bigint; flags: bigint }>(128, {
  db: [0, array(u64, 4)],
  dr6: [32, u64],
  dr7: [40, u64],
  flags: [48, u64],
})

const PIC_FIELDS = [
  'lastIrr',
  'irr',
  'imr',
  'isr',
  'priorityAdd',
  'irqBase',
  'readRegSelect',
  'poll',
  'specialMask',
  'initState',
  'autoEoi',
  'rotateOnAutoEoi',
  'specialFullyNestedMode',
  'init4',
  'elcr',
  'elcrMask',
] as const
export type PicState = Record<(typeof PIC_FIELDS)[number], number>

/**
 * struct kvm_pic_state { __u8 last_irr, irr, imr, isr, priority_add, irq_base, read_reg_select,
 *   poll, special_mask, init_state, auto_eoi, rotate_on_auto_eoi, special_fully_nested_mode, init4,
 *   elcr, elcr_mask; }  (16 bytes: one 8259A, one u8 each in this order)
 */
export const KVM_PIC_STATE = struct<PicState>(
  16,
  Object.fromEntries(PIC_FIELDS.map((name, i) => [name, [i, u8]])) as unknown as Fields<PicState>,
)

/**
 * struct kvm_ioapic_state { __u64 base_address; __u32 ioregsel; __u32 id; __u32 irr; __u32 pad;
 *   union { __u64 bits; struct { ... } fields; } redirtbl[KVM_IOAPIC_NUM_PINS]; }
 * (216 bytes; 24 pins, each redirection entry as its raw 64 bits: 82093AA IOAPIC §3.2.4)
 */
export const KVM_IOAPIC_STATE = struct<{
  baseAddress: bigint
  ioregsel: number
  id: number
  irr: number
  redirtbl: bigint[]
}>(216, {
  baseAddress: [0, u64],
  ioregsel: [8, u32],
  id: [12, u32],
  irr: [16, u32],
  redirtbl: [24, array(u64, 24)],
})

/**
 * struct kvm_irqchip { __u32 chip_id; __u32 pad; union { char dummy[512]; struct kvm_pic_state pic;
 *   struct kvm_ioapic_state ioapic; } chip; }  (520 bytes; chip_id KVM_IRQCHIP_PIC_MASTER 0,
 *   KVM_IRQCHIP_PIC_SLAVE 1, KVM_IRQCHIP_IOAPIC 2; the state starts at byte 8)
 */
export const KVM_IRQCHIP_SIZE = 520
export const KVM_IRQCHIP_STATE_OFFSET = 8

/**
 * struct kvm_pit_channel_state { __u32 count; __u16 latched_count; __u8 count_latched;
 *   __u8 status_latched; __u8 status; __u8 read_state; __u8 write_state; __u8 write_latch;
 *   __u8 rw_mode; __u8 mode; __u8 bcd; __u8 gate; __s64 count_load_time; }  (24 bytes)
 */
export const KVM_PIT_CHANNEL_STATE = struct<{
  count: number
  latchedCount: number
  mode: number
  gate: number
  countLoadTime: bigint
}>(24, { count: [0, u32], latchedCount: [4, u16], mode: [13, u8], gate: [15, u8], countLoadTime: [16, u64] })

export type PitChannelState = ReturnType<typeof KVM_PIT_CHANNEL_STATE.read>

/** struct kvm_pit_state2 { struct kvm_pit_channel_state channels[3]; __u32 flags; __u32 reserved[9]; }  (112 bytes) */
export const KVM_PIT_STATE2 = struct<{ channels: PitChannelState[]; flags: number }>(112, {
  channels: [0, array(KVM_PIT_CHANNEL_STATE, 3)],
  flags: [72, u32],
})
