// vCPU state ioctls: each kernel struct is copied whole, once per ioctl, into one ArrayBuffer
// (get) or out of one Uint8Array (set); TypeScript decodes and encodes it with one layout table per
// struct (src/state/layouts.ts). No field-by-field marshalling here.
//
// Every ioctl in this file goes to a vCPU fd and runs on that vCPU's own thread (RunOnVcpu: KVM
// wants vCPU ioctls from the thread that created the vCPU), while the vCPU is not in KVM_RUN
// (Get(info, true) refuses a running vCPU; inside an exit handler the vCPU thread is waiting for
// JS). The buffers belong to the JS thread's frame, which stays blocked in RunOnVcpu until the vCPU
// thread has finished with them.
#include <linux/kvm.h>

#include <cstring>

#include "flex.h"
#include "vm.h"

namespace vmm {

// A get/set pair of ioctls that move one fixed-size struct. `size` is sizeof the struct, which
// must be what the request number encodes (_IOC_SIZE): checked at compile time below, so the
// kernel never reads or writes more than the buffer holds (kvm_xsave's come from C, see flex.h).
struct StateIoctl {
  const char* name;  // the struct's name (what TypeScript asks for)
  unsigned long get, set;
  const char* getName;
  const char* setName;
  size_t size;
};

#define STATE(s, g, st) {#s, g, st, #g, #st, sizeof(struct s)}
#define SIZED(s, g, st) \
  static_assert(_IOC_SIZE(g) == sizeof(struct s) && _IOC_SIZE(st) == sizeof(struct s), #s " size")

// SAFETY (for each row): vCPU fd on its own thread, stopped (see the top of this file); the
// kernel writes (get) or reads (set) exactly `size` bytes at the buffer, which holds `size` bytes.
static const StateIoctl kStates[] = {
    // struct kvm_regs: the general-purpose registers, rip and rflags.
    STATE(kvm_regs, KVM_GET_REGS, KVM_SET_REGS),
    // struct kvm_sregs: segments, descriptor tables, control registers, EFER, APIC base and the
    // pending-interrupt bitmap.
    STATE(kvm_sregs, KVM_GET_SREGS, KVM_SET_SREGS),
    // struct kvm_fpu: x87 and SSE state in FXSAVE's terms.
    STATE(kvm_fpu, KVM_GET_FPU, KVM_SET_FPU),
    // struct kvm_vcpu_events: pending/injected exception, interrupt, NMI, SIPI vector, SMM. A set
    // applies only the parts its flags name (KVM_VCPUEVENT_VALID_*), TypeScript sets them.
    STATE(kvm_vcpu_events, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS),
    // struct kvm_lapic_state: the 1 KiB LAPIC register page (needs the in-kernel irqchip, else
    // ENXIO).
    STATE(kvm_lapic_state, KVM_GET_LAPIC, KVM_SET_LAPIC),
    // struct kvm_mp_state: one u32, KVM_MP_STATE_*.
    STATE(kvm_mp_state, KVM_GET_MP_STATE, KVM_SET_MP_STATE),
    // struct kvm_xsave: the XSAVE area (4 KiB; larger ones go through KVM_GET_XSAVE2, below).
    // Its numbers and size come from C (flex.h): C++ gets them wrong for this struct.
    {"kvm_xsave", vmm_KVM_GET_XSAVE, vmm_KVM_SET_XSAVE, "KVM_GET_XSAVE", "KVM_SET_XSAVE", vmm_sizeof_kvm_xsave},
    // struct kvm_xcrs: the extended control registers (XCR0).
    STATE(kvm_xcrs, KVM_GET_XCRS, KVM_SET_XCRS),
    // struct kvm_debugregs: DR0-3, DR6, DR7.
    STATE(kvm_debugregs, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS),
};
SIZED(kvm_regs, KVM_GET_REGS, KVM_SET_REGS);
SIZED(kvm_sregs, KVM_GET_SREGS, KVM_SET_SREGS);
SIZED(kvm_fpu, KVM_GET_FPU, KVM_SET_FPU);
SIZED(kvm_vcpu_events, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS);
SIZED(kvm_lapic_state, KVM_GET_LAPIC, KVM_SET_LAPIC);
SIZED(kvm_mp_state, KVM_GET_MP_STATE, KVM_SET_MP_STATE);
SIZED(kvm_xcrs, KVM_GET_XCRS, KVM_SET_XCRS);
SIZED(kvm_debugregs, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS);
#undef STATE
#undef SIZED

static const StateIoctl& Find(Napi::Env env, const std::string& name) {
  for (const StateIoctl& s : kStates)
    if (name == s.name) return s;
  throw Napi::TypeError::New(env, "no vCPU state struct named '" + name + "'");
}

// The XSAVE area's size for this VM: KVM_CAP_XSAVE2's answer when it is larger than struct
// kvm_xsave (dynamic features such as AMX enabled with arch_prctl), else 4096.
size_t Vm::XsaveSize() {
  if (xsaveSize_ == 0) {
    // SAFETY: VM fd (owned by this object, open: callers passed Get()); capability by value.
    int r = RetryIoctl(fd_, KVM_CHECK_EXTENSION, (unsigned long)KVM_CAP_XSAVE2);
    xsaveSize_ = r > int(vmm_sizeof_kvm_xsave) ? size_t(r) : vmm_sizeof_kvm_xsave;
  }
  return xsaveSize_;
}

// getVcpuState(id, structName) -> ArrayBuffer holding the struct as the kernel wrote it.
Napi::Value Vm::GetVcpuState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  const StateIoctl& s = Find(env, info[1].As<Napi::String>());
  size_t size = s.size;
  unsigned long req = s.get;
  const char* reqName = s.getName;
  if (s.get == vmm_KVM_GET_XSAVE && XsaveSize() > size) {
    // KVM_GET_XSAVE refuses an area larger than struct kvm_xsave; KVM_GET_XSAVE2 writes XsaveSize().
    size = XsaveSize();
    req = vmm_KVM_GET_XSAVE2;
    reqName = "KVM_GET_XSAVE2";
  }
  std::vector<uint64_t> buf((size + 7) / 8);  // 8-byte aligned, as the structs' u64 fields want
  int err = 0;
  // SAFETY: the row's invariant (kStates): vCPU fd on its thread, stopped; buf holds `size` bytes,
  // the request's struct size (or KVM_CAP_XSAVE2's size for KVM_GET_XSAVE2).
  RunOnVcpu(env, v, [&] {
    if (RetryIoctl(v->fd, req, buf.data()) < 0) err = errno;
  });
  if (err) ThrowSys(env, err, "ioctl", reqName);
  return CopyOut(env, buf.data(), size);
}

// setVcpuState(id, structName, bytes): bytes must be exactly the struct (as getVcpuState gave it).
Napi::Value Vm::SetVcpuState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  const StateIoctl& s = Find(env, info[1].As<Napi::String>());
  size_t size = s.set == vmm_KVM_SET_XSAVE ? XsaveSize() : s.size;
  std::vector<uint64_t> buf((size + 7) / 8);
  memcpy(buf.data(), BytesIn(env, info[2], size, s.setName), size);
  int err = 0;
  // SAFETY: the row's invariant (kStates); buf is a copy of exactly `size` bytes (checked by
  // BytesIn; KVM_SET_XSAVE reads KVM_CAP_XSAVE2's size), read only by the kernel.
  RunOnVcpu(env, v, [&] {
    if (RetryIoctl(v->fd, s.set, buf.data()) < 0) err = errno;
  });
  if (err) ThrowSys(env, err, "ioctl", s.setName);
  return env.Undefined();
}

// msrs(id, set, bytes) -> count: KVM_GET_MSRS / KVM_SET_MSRS on a struct kvm_msrs that TypeScript
// laid out (u32 nmsrs, u32 pad, then nmsrs struct kvm_msr_entry). A get writes the data back into
// `bytes`. The count is how many entries KVM processed (it stops at the first MSR it refuses).
Napi::Value Vm::Msrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  bool set = info[1].ToBoolean();
  const char* name = set ? "KVM_SET_MSRS" : "KVM_GET_MSRS";
  Napi::Uint8Array bytes = info[2].As<Napi::Uint8Array>();
  uint32_t n = 0;
  if (bytes.ByteLength() >= 8) memcpy(&n, bytes.Data(), 4);
  size_t size = 8 + size_t(n) * sizeof(kvm_msr_entry);
  const uint8_t* in = BytesIn(env, bytes, size, name);  // the header's nmsrs matches the length
  std::vector<uint64_t> buf(size / 8);
  memcpy(buf.data(), in, size);
  int got = 0;
  // The ioctl is in flex.c (kvm_msrs ends in a flexible array; see flex.h), issued on the vCPU's
  // thread while it is stopped, on buf: nmsrs entries after the header, as checked above.
  RunOnVcpu(env, v, [&] { got = vmm_msrs(v->fd, set, buf.data()); });
  if (got < 0) ThrowSys(env, -got, "ioctl", name);
  if (!set) memcpy(bytes.Data(), buf.data(), size);
  return Napi::Number::New(env, got);
}

static constexpr uint32_t kMaxCpuidEntries = 256;

// setCpuid(id, bytes): KVM_SET_CPUID2 with the struct kvm_cpuid_entry2 array in `bytes`.
Napi::Value Vm::SetCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
  uint32_t n = uint32_t(bytes.ByteLength() / sizeof(kvm_cpuid_entry2));
  if (n * sizeof(kvm_cpuid_entry2) != bytes.ByteLength() || n > kMaxCpuidEntries)
    throw Napi::RangeError::New(env, "setCpuid: expected at most 256 struct kvm_cpuid_entry2 of 40 bytes");
  std::vector<kvm_cpuid_entry2> entries(n);
  memcpy(entries.data(), bytes.Data(), bytes.ByteLength());
  int r = 0;
  // The ioctl is in flex.c (kvm_cpuid2 ends in a flexible array), on the vCPU's thread while it is
  // stopped, with the n entries copied above.
  RunOnVcpu(env, v, [&] { r = vmm_set_vcpu_cpuid(v->fd, entries.data(), n); });
  if (r < 0) ThrowSys(env, -r, "ioctl", "KVM_SET_CPUID2");
  return env.Undefined();
}

// getCpuid(id) -> ArrayBuffer of struct kvm_cpuid_entry2 (KVM_GET_CPUID2).
Napi::Value Vm::GetCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  std::vector<kvm_cpuid_entry2> e(kMaxCpuidEntries);
  int n = 0;
  // In flex.c, as for setCpuid; room for kMaxCpuidEntries entries (E2BIG beyond, reported).
  RunOnVcpu(env, v, [&] { n = vmm_get_vcpu_cpuid(v->fd, e.data(), kMaxCpuidEntries); });
  if (n < 0) ThrowSys(env, -n, "ioctl", "KVM_GET_CPUID2");
  return CopyOut(env, e.data(), size_t(n) * sizeof(kvm_cpuid_entry2));
}

Napi::Value Vm::GetTscKhz(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  int khz = -1, err = 0;
  RunOnVcpu(env, v, [&] {
    // SAFETY: vCPU fd on its thread, stopped; no argument, the frequency is the return value.
    khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
    if (khz < 0) err = errno;
  });
  if (khz < 0) ThrowSys(env, err, "ioctl", "KVM_GET_TSC_KHZ");
  return Napi::Number::New(env, khz);
}

}  // namespace vmm
