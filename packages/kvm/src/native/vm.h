// The VM fd and its vCPUs: one Vm object (a Napi::ObjectWrap that JS sees as the native Vm)
// owns the VM fd, every vCPU fd, the vCPU threads and their kvm_run mappings.
//
// Its methods live in three files by the fd they act on:
//   vm.cc          VM ioctls (memory slots, irqchip, PIT, clock, eventfds, routing, VM state blobs)
//   vcpu.cc        the vCPU threads, KVM_CREATE_VCPU / KVM_RUN and the exit hand-off to JS
//   vcpu_state.cc  vCPU state ioctls, each struct copied whole into one ArrayBuffer
//
// Threads: every vCPU is created (KVM_CREATE_VCPU) and run (KVM_RUN) on its own pthread, named
// after the vCPU, because KVM wants vCPU ioctls from the creating thread (Documentation/virt/kvm/
// api.rst, "General description"). Register access requested by JavaScript is shipped to that
// thread as a command (RunOnVcpu) while the vCPU is stopped or waiting on an exit.
#pragma once

#include <napi.h>

#include <linux/filter.h>
#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sys.h"

namespace vmm {

class Vm;

enum Msg : uint32_t { MSG_NONE = 0, MSG_RUN = 1, MSG_RESUME = 2, MSG_STOP = 3, MSG_CMD = 4 };
enum ExitKind : int32_t { EXIT_KVM = 0, EXIT_KICK = 1, EXIT_ERROR = 2, EXIT_QUIT = 3 };
enum VcpuState : uint32_t { ST_IDLE = 0, ST_RUNNING = 1, ST_EXITED = 2 };

struct Vcpu {
  Vm* vm = nullptr;
  uint32_t id = 0;
  std::string name;
  int fd = -1;
  kvm_run* run = nullptr;
  size_t mmapSize = 0;
  Napi::Reference<Napi::ArrayBuffer> runBuffer;  // JS's view of *run, detached on dispose
  pthread_t thread{};
  bool joined = true;

  // JS -> vCPU: a sequence word the vCPU thread waits on, and the message it announces.
  std::atomic<uint32_t> inbox{0};
  std::atomic<uint32_t> inboxSleeping{0};
  std::atomic<uint32_t> msg{MSG_NONE};
  std::function<void()> cmd;
  uint32_t inboxSeen = 0;  // vCPU thread only

  // vCPU -> JS: command completion, creation, stop acknowledgement.
  std::atomic<uint32_t> outbox{0};
  std::atomic<uint32_t> outboxSleeping{0};

  // vCPU -> JS: an exit waiting for the dispatcher.
  std::atomic<uint32_t> exitPending{0};
  int32_t exitKind = 0;
  int32_t exitErrno = 0;

  std::atomic<bool> kickRequested{false};
  std::atomic<bool> quitRequested{false};
  int createErrno = 0;
  const char* createWhat = nullptr;

  uint32_t jsState = ST_IDLE;  // JS thread's view: who owns the vCPU now

  // vcpu_seccomp.cc: the filter generation this thread installed.
  uint32_t filterGen = 0;
};

// The vCPU threads' seccomp program (vcpu_seccomp.cc).
struct VcpuFilter {
  std::vector<struct sock_filter> insns;
  uint32_t gen = 0;
};

// The signal that interrupts KVM_RUN for a kick (vcpu.cc).
int KickSignal();
void InstallKickHandler();

class Vm : public Napi::ObjectWrap<Vm> {
 public:
  static Napi::Function Init(Napi::Env env);
  Vm(const Napi::CallbackInfo& info);
  ~Vm() override {
    if (!disposed_) napi_remove_env_cleanup_hook(Env(), CleanupHook, this);
    DisposeAll();
  }

  // Called on a vCPU thread after it posted an exit.
  void Notify() {
    if (jsSleeping_.exchange(0, std::memory_order_seq_cst)) wake_.NonBlockingCall(CallWake);
  }
  // Runs the JS wake function on the event loop. A call still queued while the environment shuts
  // down finds no JS to run: that is not an error. An exception from JS stays a JS exception.
  static void CallWake(Napi::Env env, Napi::Function fn) {
    if (env == nullptr || fn.IsEmpty()) return;
    try {
      fn.Call({});
    } catch (const Napi::Error& e) {
      if (!e.Value().IsEmpty()) e.ThrowAsJavaScriptException();
    }
  }
  int fd() const { return fd_; }
  // vcpu_seccomp.cc: the vCPU filter's generation (checked before each KVM_RUN) and its install.
  uint32_t FilterGen() const { return filterGen_.load(std::memory_order_relaxed); }
  int InstallVcpuFilter(Vcpu* v);
  static void CleanupHook(void* self) { static_cast<Vm*>(self)->DisposeAll(); }

 private:
  // vcpu.cc: finding a vCPU, running a command on its thread, stopping the threads.
  Vcpu* Get(const Napi::CallbackInfo& info, bool mustBeStopped = false);
  void RunOnVcpu(Napi::Env env, Vcpu* v, std::function<void()> fn);
  void Post(Vcpu* v, Msg m) {
    v->msg.store(m, std::memory_order_relaxed);
    PostChange(v->inbox, v->inboxSleeping);
  }
  void WaitOutbox(Vcpu* v, uint32_t seen) { WaitChange(v->outbox, seen, v->outboxSleeping, 50000); }
  void DisposeAll();
  void StopThread(Vcpu* v);

  // vm.cc: VM ioctls
  Napi::Value SetUserMemoryRegion(const Napi::CallbackInfo& info);
  Napi::Value CreateIrqchip(const Napi::CallbackInfo& info);
  Napi::Value CreatePit2(const Napi::CallbackInfo& info);
  Napi::Value SetTssAddr(const Napi::CallbackInfo& info);
  Napi::Value SetIdentityMapAddr(const Napi::CallbackInfo& info);
  Napi::Value IrqLine(const Napi::CallbackInfo& info);
  Napi::Value GetClock(const Napi::CallbackInfo& info);
  Napi::Value SetClock(const Napi::CallbackInfo& info);
  Napi::Value Ioeventfd(const Napi::CallbackInfo& info);
  Napi::Value Irqfd(const Napi::CallbackInfo& info);
  Napi::Value SetGsiRouting(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value EnableCap(const Napi::CallbackInfo& info);
  Napi::Value GetIrqchip(const Napi::CallbackInfo& info);
  Napi::Value SetIrqchip(const Napi::CallbackInfo& info);
  Napi::Value GetPit2(const Napi::CallbackInfo& info);
  Napi::Value SetPit2(const Napi::CallbackInfo& info);
  Napi::Value GetDirtyLog(const Napi::CallbackInfo& info);

  // vcpu.cc: vCPU management and the exit path
  Napi::Value CreateVcpu(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Poll(const Napi::CallbackInfo& info);
  Napi::Value ResumeAndPoll(const Napi::CallbackInfo& info);
  int32_t PollFor(uint64_t spinNs);
  Napi::Value Complete(const Napi::CallbackInfo& info);
  Napi::Value Arm(const Napi::CallbackInfo& info);
  Napi::Value Kick(const Napi::CallbackInfo& info);
  Napi::Value ExitErrno(const Napi::CallbackInfo& info);
  Napi::Value KeepAlive(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  // vcpu_state.cc: vCPU state (executed on the vCPU's thread)
  Napi::Value GetVcpuState(const Napi::CallbackInfo& info);
  Napi::Value SetVcpuState(const Napi::CallbackInfo& info);
  Napi::Value Msrs(const Napi::CallbackInfo& info);
  Napi::Value SetCpuid(const Napi::CallbackInfo& info);
  Napi::Value GetCpuid(const Napi::CallbackInfo& info);
  Napi::Value GetTscKhz(const Napi::CallbackInfo& info);
  size_t XsaveSize();

  // vcpu_seccomp.cc
  Napi::Value SetVcpuFilter(const Napi::CallbackInfo& info);

  int fd_ = -1;
  size_t mmapSize_ = 0;
  std::map<uint32_t, uint64_t> slotSizes_;  // memory slot -> size, for KVM_GET_DIRTY_LOG's bitmap
  size_t xsaveSize_ = 0;  // KVM_CAP_XSAVE2's answer, asked once (vcpu_state.cc)
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  uint32_t lastPolled_ = 0;
  std::atomic<uint32_t> jsSleeping_{0};
  Napi::ThreadSafeFunction wake_;
  bool keepAlive_ = false;
  bool disposed_ = false;
  std::shared_ptr<const VcpuFilter> vcpuFilter_;  // std::atomic_load/store: read by vCPU threads
  std::atomic<uint32_t> filterGen_{0};
};

}  // namespace vmm
