// A seccomp filter for the vCPU threads: each vCPU thread installs it on itself (seccomp(2)
// without TSYNC applies to the calling thread only, Documentation/userspace-api/seccomp_filter.rst),
// stacked on the process-wide filter @vmm/host installs with TSYNC. The program is compiled in
// TypeScript (@vmm/host src/seccomp/bpf.ts) and handed here as bytes.
//
// When: a vCPU that is not in KVM_RUN (idle, or waiting on JS for an exit) installs it at once, as
// a command on its thread, so setVcpuFilter reports a failure; a vCPU running the guest installs
// it before its next KVM_RUN (RunLoop checks one counter per exit), as does a vCPU created later.
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vm.h"

namespace vmm {

// On the vCPU's own thread. Returns 0 or the errno.
int Vm::InstallVcpuFilter(Vcpu* v) {
  std::shared_ptr<const VcpuFilter> f = std::atomic_load(&vcpuFilter_);
  if (!f) return 0;
  v->filterGen = f->gen;
  // SAFETY: prog points into *f, which stays alive for the call; the kernel copies the program.
  sock_fprog prog{uint16_t(f->insns.size()), const_cast<sock_filter*>(f->insns.data())};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) return errno;
  return 0;
}

// setVcpuFilter(program): every vCPU installs it, now if it is not in the guest.
Napi::Value Vm::SetVcpuFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (disposed_) throw Napi::Error::New(env, "VM is disposed");
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  if (bytes.ByteLength() == 0 || bytes.ByteLength() % sizeof(sock_filter) != 0 || bytes.ByteLength() / sizeof(sock_filter) > BPF_MAXINSNS)
    throw Napi::TypeError::New(env, "setVcpuFilter: the program must be 1 to 4096 struct sock_filter");
  auto f = std::make_shared<VcpuFilter>();
  f->insns.resize(bytes.ByteLength() / sizeof(sock_filter));
  memcpy(f->insns.data(), bytes.Data(), bytes.ByteLength());
  std::shared_ptr<const VcpuFilter> old = std::atomic_load(&vcpuFilter_);
  f->gen = (old ? old->gen : 0) + 1;
  std::atomic_store(&vcpuFilter_, std::shared_ptr<const VcpuFilter>(f));
  filterGen_.store(f->gen, std::memory_order_release);
  for (auto& v : vcpus_) {
    if (!v || v->jsState == ST_RUNNING) continue;  // it installs before its next KVM_RUN
    int err = 0;
    RunOnVcpu(env, v.get(), [&] { err = InstallVcpuFilter(v.get()); });
    if (err != 0) ThrowSys(env, err, "seccomp");
  }
  return env.Undefined();
}

}  // namespace vmm
