// The functions each file of the binding registers on the module's exports (binding.cc).
#pragma once

#include <napi.h>

namespace vmm {

// system.cc: /dev/kvm
Napi::Value OpenSystem(const Napi::CallbackInfo& info);
Napi::Value CloseFd(const Napi::CallbackInfo& info);
Napi::Value ApiVersion(const Napi::CallbackInfo& info);
Napi::Value CheckExtension(const Napi::CallbackInfo& info);
Napi::Value VcpuMmapSize(const Napi::CallbackInfo& info);
Napi::Value SupportedCpuid(const Napi::CallbackInfo& info);
Napi::Value MsrIndexList(const Napi::CallbackInfo& info);
Napi::Object StructSizes(Napi::Env env);

// memory.cc: guest RAM mappings
Napi::Value MapMemory(const Napi::CallbackInfo& info);
Napi::Value UnmapMemory(const Napi::CallbackInfo& info);
Napi::Value DiscardMemory(const Napi::CallbackInfo& info);

}  // namespace vmm
