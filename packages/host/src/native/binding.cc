// @vmm/host's native module: the host system calls vmm needs that are not KVM and that Node does
// not offer. Every function is a thin syscall wrapper that keeps errno; policy lives in
// TypeScript (src/*.ts). The calls live by kind: fd.cc (eventfds, fd I/O, event-loop watches),
// tap.cc (TUN/TAP), pages.cc (madvise, fallocate), disk.cc (flock, BLKGETSIZE64), mknod.cc (mknodat),
// heap.cc (malloc), pty.cc (openpty, SCM_RIGHTS),
// seccomp.cc (filters, the SIGSYS reporter, the record-mode supervisor), netns.cc (a TAP in
// another network namespace).
#include "host.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  vmm_host::InitFd(env, exports);
  vmm_host::InitTap(env, exports);
  vmm_host::InitPages(env, exports);
  vmm_host::InitDisk(env, exports);
  vmm_host::InitMknod(env, exports);
  vmm_host::InitHeap(env, exports);
  vmm_host::InitPty(env, exports);
  vmm_host::InitSeccomp(env, exports);
  vmm_host::InitNetns(env, exports);
  return exports;
}
NODE_API_MODULE(vmm_host, Init)
