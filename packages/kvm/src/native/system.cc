// The system fd, /dev/kvm: opening it and the ioctls that ask the host what KVM offers.
//
// Every ioctl here goes to a /dev/kvm fd the TypeScript Kvm opened (openSystem) and owns until
// Kvm.close(); system ioctls may come from any thread, here the JS thread.
#include <fcntl.h>
#include <linux/kvm.h>
#include <unistd.h>

#include <vector>

#include "binding.h"
#include "flex.h"
#include "sys.h"

namespace vmm {

Napi::Value OpenSystem(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) ThrowSys(env, errno, "open");
  return Napi::Number::New(env, fd);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = Int(info[0]);
  // Linux closes the fd even when close() reports EINTR, so EINTR is neither retried nor reported.
  if (fd >= 0 && close(fd) < 0 && errno != EINTR) ThrowSys(info.Env(), errno, "close");
  return info.Env().Undefined();
}

Napi::Value ApiVersion(const Napi::CallbackInfo& info) {
  // SAFETY: system fd (or any fd Kvm.open is probing: a non-KVM fd answers ENOTTY, reported);
  // no argument, the version is the return value.
  return Napi::Number::New(info.Env(), IOCTL(info.Env(), Int(info[0]), KVM_GET_API_VERSION, 0));
}

Napi::Value CheckExtension(const Napi::CallbackInfo& info) {
  // SAFETY: system fd; the capability number by value, the answer is the return value.
  return Napi::Number::New(info.Env(), IOCTL(info.Env(), Int(info[0]), KVM_CHECK_EXTENSION, Int(info[1])));
}

Napi::Value VcpuMmapSize(const Napi::CallbackInfo& info) {
  // SAFETY: system fd; no argument, the size is the return value.
  return Napi::Number::New(info.Env(), IOCTL(info.Env(), Int(info[0]), KVM_GET_VCPU_MMAP_SIZE, 0));
}

static constexpr unsigned kMaxCpuidEntries = 256;

// supportedCpuid(fd) -> ArrayBuffer of struct kvm_cpuid_entry2 (src/state/layouts.ts decodes it).
Napi::Value SupportedCpuid(const Napi::CallbackInfo& info) {
  std::vector<kvm_cpuid_entry2> e(kMaxCpuidEntries);
  // The ioctl is in flex.c (kvm_cpuid2 ends in a flexible array; see flex.h): system fd, room for
  // kMaxCpuidEntries entries in e (KVM answers E2BIG when it has more, reported).
  int n = vmm_get_supported_cpuid(Int(info[0]), e.data(), kMaxCpuidEntries);
  if (n < 0) ThrowSys(info.Env(), -n, "ioctl", "KVM_GET_SUPPORTED_CPUID");
  return CopyOut(info.Env(), e.data(), size_t(n) * sizeof(kvm_cpuid_entry2));
}

Napi::Value MsrIndexList(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool feature = info[1].ToBoolean();
  std::vector<uint32_t> idx(4096);
  // In flex.c as well (kvm_msr_list): system fd, room for idx.size() indices.
  int n = vmm_msr_index_list(Int(info[0]), feature, idx.data(), uint32_t(idx.size()));
  if (n < 0) ThrowSys(env, -n, "ioctl", feature ? "KVM_GET_MSR_FEATURE_INDEX_LIST" : "KVM_GET_MSR_INDEX_LIST");
  Napi::Array out = Napi::Array::New(env, n);
  for (int i = 0; i < n; i++) out.Set(uint32_t(i), idx[i]);
  return out;
}

// sizeof every struct TypeScript lays out (src/state/layouts.ts), as this compiler sees the uapi
// headers: a test checks each layout's size against it, so a layout cannot drift from the kernel.
Napi::Object StructSizes(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
#define S(s) o.Set(#s, Napi::Number::New(env, double(sizeof(struct s))));
  S(kvm_regs) S(kvm_sregs) S(kvm_segment) S(kvm_dtable) S(kvm_fpu) S(kvm_vcpu_events)
  S(kvm_lapic_state) S(kvm_mp_state) S(kvm_xcrs) S(kvm_debugregs) S(kvm_msr_entry)
  S(kvm_cpuid_entry2) S(kvm_irqchip) S(kvm_pic_state) S(kvm_ioapic_state) S(kvm_pit_state2)
  S(kvm_pit_channel_state)
#undef S
  // These end in a flexible array (see flex.h): their sizes as C has them.
  o.Set("kvm_xsave", Napi::Number::New(env, double(vmm_sizeof_kvm_xsave)));
  o.Set("kvm_msrs", Napi::Number::New(env, 8));
  return o;
}

}  // namespace vmm
