// @vmm/kvm's native module: /dev/kvm, guest memory mappings, vCPU threads and their exits.
//
// Policy lives in TypeScript (src/*.ts); this module only issues syscalls, keeps errno, and moves
// vCPU exits between the vCPU threads and the JavaScript thread as fast as it can. Its files, by
// the fd they act on:
//   system.cc      the /dev/kvm fd: API version, capabilities, supported CPUID, MSR lists
//   memory.cc      guest RAM mappings (mmap, memfd) the VM's memory slots point at
//   vm.h, vm.cc    the VM fd (the native Vm class): memory slots, irqchip, PIT, clock, eventfds,
//                  GSI routing, VM state blobs
//   vcpu.cc        vCPU threads, KVM_CREATE_VCPU / KVM_RUN and the exit hand-off
//   vcpu_state.cc  vCPU state ioctls, each struct whole in one buffer
//   flex.c         the ioctls whose structs end in a flexible array (see flex.h)
// Host calls that are not KVM (TAP, eventfds, fd watches, fallocate, madvise) are @vmm/host's.
#include "binding.h"
#include "vm.h"

namespace vmm {

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("openSystem", Napi::Function::New(env, OpenSystem));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("apiVersion", Napi::Function::New(env, ApiVersion));
  exports.Set("checkExtension", Napi::Function::New(env, CheckExtension));
  exports.Set("vcpuMmapSize", Napi::Function::New(env, VcpuMmapSize));
  exports.Set("supportedCpuid", Napi::Function::New(env, SupportedCpuid));
  exports.Set("msrIndexList", Napi::Function::New(env, MsrIndexList));
  exports.Set("structSizes", StructSizes(env));
  exports.Set("mapMemory", Napi::Function::New(env, MapMemory));
  exports.Set("unmapMemory", Napi::Function::New(env, UnmapMemory));
  exports.Set("discardMemory", Napi::Function::New(env, DiscardMemory));
  exports.Set("Vm", Vm::Init(env));
  return exports;
}

}  // namespace vmm

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return vmm::InitModule(env, exports); }
NODE_API_MODULE(vmm_kvm, Init)
