// vCPU threads and the exit hand-off: KVM_CREATE_VCPU and KVM_RUN on each vCPU's own thread, and
// the handshake that moves each exit to the JavaScript thread and back.
//
// The exit round trip (the hot path of every emulated device):
//   vCPU thread: KVM_RUN returns -> exitPending = 1 -> spin, then futex-wait on its inbox
//   JS thread:   Vm.poll() sees exitPending (spinning briefly when it has just handled an exit),
//                the TypeScript dispatcher reads/writes struct kvm_run in place (it is an external
//                ArrayBuffer over the vCPU's mmap), Vm.complete() bumps the inbox
//   vCPU thread: sees the inbox change, re-enters KVM_RUN
// When the JS thread is idle it "arms" a thread-safe function, and the next exit wakes the event
// loop through it instead; both sides fall back to sleeping, so nobody spins for long.
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>

#include <mutex>

#include "vm.h"

namespace vmm {

static constexpr int kKickSignalOffset = 6;  // SIGRTMIN + 6: unused by Node, libuv and glibc
int KickSignal() { return SIGRTMIN + kKickSignalOffset; }

void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};  // its only job is to make KVM_RUN return -EINTR
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the ioctl must be interrupted
    sigaction(KickSignal(), &sa, nullptr);
  });
}

static constexpr uint64_t kVcpuSpinNs = 100000;  // how long a vCPU waits hot for JS's answer
static void* VcpuThread(void* arg);

// Runs on the vCPU thread until a stop or quit; returns false on quit.
static bool RunLoop(Vcpu* v) {
  for (;;) {
    if (v->quitRequested.load(std::memory_order_acquire)) return false;
    // SAFETY: v->fd is the vCPU fd this thread created (KVM_RUN must come from that thread);
    // KVM_RUN takes no argument and reports through v->run, the vCPU's kvm_run mapping, which stays
    // mapped until DisposeAll has joined this thread. JS touches *v->run only while this thread
    // waits for its answer (exitPending set, below), so the kernel and JS never write it at once.
    // Not retried on EINTR: an interrupted KVM_RUN is how a kick arrives.
    int r, err;
    // A seccomp filter set while this vCPU ran goes on before it enters the guest again; failing
    // to install it is this vCPU's error (vcpu_seccomp.cc).
    if (v->filterGen != v->vm->FilterGen() && (err = v->vm->InstallVcpuFilter(v)) != 0) {
      r = -1;
    } else {
      r = ioctl(v->fd, KVM_RUN, 0);
      err = errno;
    }
    int32_t kind = EXIT_KVM;
    // A signal or immediate_exit ends KVM_RUN with -EINTR (or -EAGAIN for a vCPU still waiting for
    // INIT/SIPI), and some KVMs (kvm_pvm here) report it as a successful run with KVM_EXIT_INTR.
    bool interrupted = r < 0 ? (err == EINTR || err == EAGAIN) : v->run->exit_reason == KVM_EXIT_INTR;
    if (interrupted) {
      v->run->immediate_exit = 0;
      if (v->quitRequested.load(std::memory_order_acquire)) return false;
      if (!v->kickRequested.exchange(false)) continue;  // a stray signal: back into the guest
      kind = EXIT_KICK;
    } else if (r < 0) {
      kind = EXIT_ERROR;
    }
    v->exitKind = kind;
    v->exitErrno = kind == EXIT_ERROR ? err : 0;
    v->exitPending.store(1, std::memory_order_seq_cst);
    v->vm->Notify();
    // Wait for JS's answer, serving register commands meanwhile (an exit handler may read regs).
    for (;;) {
      v->inboxSeen = WaitChange(v->inbox, v->inboxSeen, v->inboxSleeping, kVcpuSpinNs);
      if (v->quitRequested.load(std::memory_order_acquire)) return false;
      uint32_t m = v->msg.load(std::memory_order_acquire);
      if (m == MSG_CMD) {
        v->cmd();
        PostChange(v->outbox, v->outboxSleeping);
        continue;
      }
      if (m == MSG_RESUME) break;
      if (m == MSG_STOP) {
        PostChange(v->outbox, v->outboxSleeping);
        return true;
      }
    }
  }
}

static void* VcpuThread(void* arg) {
  auto* v = static_cast<Vcpu*>(arg);
  pthread_setname_np(pthread_self(), v->name.substr(0, 15).c_str());
  // SCHED_BATCH (sched(7)): a vCPU thread is CPU-bound, and a woken SCHED_BATCH thread does not
  // preempt the thread that woke it. Without it, start() (QMP cont) handed the JS thread's CPU to
  // the vCPU it had just woken and got it back only at the next scheduler tick (2.8 ms per resume
  // measured on a loaded 2-core host). Best effort: a failure leaves SCHED_OTHER.
  sched_param batch{};
  batch.sched_priority = 0;
  sched_setscheduler(0, SCHED_BATCH, &batch);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, KickSignal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);

  // SAFETY: the VM fd stays open until DisposeAll, which joins this thread first; KVM_CREATE_VCPU
  // takes the vCPU id by value (no memory of ours) and is issued here, on the thread that will run
  // the vCPU, because KVM wants every vCPU ioctl from it. The new fd is owned by this Vcpu.
  v->fd = RetryIoctl(v->vm->fd(), KVM_CREATE_VCPU, (unsigned long)v->id);
  if (v->fd < 0) {
    v->createErrno = errno;
    v->createWhat = "KVM_CREATE_VCPU";
  } else {
    // The vCPU's struct kvm_run (and the pages after it) at offset 0 of the vCPU fd, mmapSize bytes
    // as KVM_GET_VCPU_MMAP_SIZE said; unmapped in DisposeAll.
    void* p = mmap(nullptr, v->mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (p == MAP_FAILED) {
      v->createErrno = errno;
      v->createWhat = "mmap";
      close(v->fd);
      v->fd = -1;
    } else {
      v->run = static_cast<kvm_run*>(p);
    }
  }
  PostChange(v->outbox, v->outboxSleeping);
  if (v->fd < 0) return nullptr;

  for (;;) {
    v->inboxSeen = WaitChange(v->inbox, v->inboxSeen, v->inboxSleeping, 0);
    if (v->quitRequested.load(std::memory_order_acquire)) break;
    uint32_t m = v->msg.load(std::memory_order_acquire);
    if (m == MSG_CMD) {
      v->cmd();
      PostChange(v->outbox, v->outboxSleeping);
    } else if (m == MSG_RUN) {
      if (!RunLoop(v)) break;
    }
  }
  // The kvm_run mapping stays until the Vm is disposed: JS may still hold its ArrayBuffer.
  return nullptr;
}

Vcpu* Vm::Get(const Napi::CallbackInfo& info, bool mustBeStopped) {
  uint32_t id = U32(info[0]);
  if (disposed_) throw Napi::Error::New(info.Env(), "VM is disposed");
  if (id >= vcpus_.size() || !vcpus_[id]) throw Napi::RangeError::New(info.Env(), "no vCPU with id " + std::to_string(id));
  Vcpu* v = vcpus_[id].get();
  if (mustBeStopped && v->jsState == ST_RUNNING)
    throw Napi::Error::New(info.Env(), "vCPU " + std::to_string(id) + " is running: pause it or handle an exit first");
  return v;
}

void Vm::RunOnVcpu(Napi::Env env, Vcpu* v, std::function<void()> fn) {
  v->cmd = std::move(fn);
  uint32_t seen = v->outbox.load(std::memory_order_acquire);
  Post(v, MSG_CMD);
  WaitOutbox(v, seen);
  v->cmd = nullptr;
}

void Vm::StopThread(Vcpu* v) {
  if (v->joined) return;
  v->quitRequested.store(true, std::memory_order_seq_cst);
  if (v->run) v->run->immediate_exit = 1;
  pthread_kill(v->thread, KickSignal());
  PostChange(v->inbox, v->inboxSleeping);
  pthread_join(v->thread, nullptr);
  v->joined = true;
}

void Vm::DisposeAll() {
  if (disposed_) return;
  disposed_ = true;
  for (auto& v : vcpus_) {
    if (!v) continue;
    StopThread(v.get());
    if (v->run) munmap(v->run, v->mmapSize);
    if (v->fd >= 0) close(v->fd);
    v->run = nullptr;
    v->fd = -1;
  }
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  if (wake_) wake_.Release();
}

Napi::Value Vm::Dispose(const Napi::CallbackInfo& info) {
  if (!disposed_) {
    // Detach JS's kvm_run views before unmapping them, so a stale view reads as empty.
    for (auto& v : vcpus_)
      if (v && !v->runBuffer.IsEmpty()) v->runBuffer.Value().Detach();
    napi_remove_env_cleanup_hook(info.Env(), CleanupHook, this);
  }
  DisposeAll();
  return info.Env().Undefined();
}

Napi::Value Vm::CreateVcpu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (disposed_) throw Napi::Error::New(env, "VM is disposed");
  uint32_t id = U32(info[0]);
  std::string name = info[1].As<Napi::String>();
  if (id < vcpus_.size() && vcpus_[id]) ThrowSys(env, EEXIST, "ioctl", "KVM_CREATE_VCPU");
  auto v = std::make_unique<Vcpu>();
  v->vm = this;
  v->id = id;
  v->name = name;
  v->mmapSize = mmapSize_;
  uint32_t seen = v->outbox.load();
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  // Block the kick signal while creating, so the new thread starts with it blocked and
  // unblocks it itself; other threads of the process never see it unblocked.
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, KickSignal());
  pthread_sigmask(SIG_BLOCK, &set, &old);
  int r = pthread_create(&v->thread, &attr, VcpuThread, v.get());
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (r != 0) ThrowSys(env, r, "pthread_create");
  v->joined = false;
  WaitOutbox(v.get(), seen);
  if (v->fd < 0) {
    pthread_join(v->thread, nullptr);
    v->joined = true;
    ThrowSys(env, v->createErrno, v->createWhat[0] == 'K' ? "ioctl" : "mmap",
             v->createWhat[0] == 'K' ? "KVM_CREATE_VCPU" : nullptr);
  }
  Napi::ArrayBuffer run = Napi::ArrayBuffer::New(env, v->run, v->mmapSize);  // owned by the Vcpu
  v->runBuffer = Napi::Persistent(run);
  if (id >= vcpus_.size()) vcpus_.resize(id + 1);
  vcpus_[id] = std::move(v);
  return run;
}

// start(id): the vCPU enters KVM_RUN and keeps running until an exit is handed to JS.
Napi::Value Vm::Start(const Napi::CallbackInfo& info) {
  Vcpu* v = Get(info);
  if (v->jsState != ST_IDLE) throw Napi::Error::New(info.Env(), "vCPU " + std::to_string(v->id) + " is already started");
  v->kickRequested.store(false);
  v->run->immediate_exit = 0;
  v->jsState = ST_RUNNING;
  Post(v, MSG_RUN);
  return info.Env().Undefined();
}

// poll(spinNs) -> -1, or kind * 65536 + vcpuId of a vCPU whose exit now belongs to JS.
int32_t Vm::PollFor(uint64_t spinNs) {
  size_t n = vcpus_.size();
  uint64_t start = 0, deadline = 0;
  for (unsigned iter = 0;; iter++) {
    for (size_t k = 0; k < n; k++) {
      uint32_t idx = uint32_t((lastPolled_ + 1 + k) % n);
      Vcpu* v = vcpus_[idx].get();
      if (v && v->exitPending.load(std::memory_order_acquire)) {
        v->exitPending.store(0, std::memory_order_relaxed);
        v->jsState = ST_EXITED;
        lastPolled_ = idx;
        return v->exitKind * 65536 + int32_t(idx);
      }
    }
    if (spinNs == 0) return -1;
    if (iter == 0) {
      start = MonotonicNs();
      deadline = start + spinNs;
    } else if (!SpinStep(iter, start, deadline)) {
      return -1;
    }
  }
}

Napi::Value Vm::Poll(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), PollFor(uint64_t(info[0].As<Napi::Number>().Int64Value())));
}

// resumeAndPoll(id, spinNs): complete(id, true) and poll(spinNs) in one call — the exit path's
// steady state, one crossing of the JS/native boundary per exit.
Napi::Value Vm::ResumeAndPoll(const Napi::CallbackInfo& info) {
  Vcpu* v = Get(info);
  if (v->jsState != ST_EXITED) throw Napi::Error::New(info.Env(), "vCPU " + std::to_string(v->id) + " has no exit to complete");
  v->jsState = ST_RUNNING;
  Post(v, MSG_RESUME);
  return Napi::Number::New(info.Env(), PollFor(uint64_t(info[1].As<Napi::Number>().Int64Value())));
}

// complete(id, resume): hands the exit back; resume=true re-enters KVM_RUN, false stops the vCPU
// (it waits idle for start()). Stopping waits until the vCPU thread has acknowledged.
Napi::Value Vm::Complete(const Napi::CallbackInfo& info) {
  Vcpu* v = Get(info);
  if (v->jsState != ST_EXITED) throw Napi::Error::New(info.Env(), "vCPU " + std::to_string(v->id) + " has no exit to complete");
  if (info[1].ToBoolean()) {
    v->jsState = ST_RUNNING;
    Post(v, MSG_RESUME);
  } else {
    uint32_t seen = v->outbox.load(std::memory_order_acquire);
    v->jsState = ST_IDLE;
    Post(v, MSG_STOP);
    WaitOutbox(v, seen);
  }
  return info.Env().Undefined();
}

// arm() -> true when the JS thread may sleep: the next exit will call the wake function.
Napi::Value Vm::Arm(const Napi::CallbackInfo& info) {
  jsSleeping_.store(1, std::memory_order_seq_cst);
  for (auto& v : vcpus_) {
    if (v && v->exitPending.load(std::memory_order_seq_cst)) {
      jsSleeping_.store(0, std::memory_order_relaxed);
      return Napi::Boolean::New(info.Env(), false);
    }
  }
  return Napi::Boolean::New(info.Env(), true);
}

// kick(id): forces the vCPU out of KVM_RUN (immediate_exit plus a signal, as Firecracker does);
// it then reports a kick exit. A vCPU waiting on JS reports the kick right after it is resumed.
Napi::Value Vm::Kick(const Napi::CallbackInfo& info) {
  Vcpu* v = Get(info);
  if (v->jsState == ST_IDLE) return Napi::Boolean::New(info.Env(), false);
  v->kickRequested.store(true, std::memory_order_seq_cst);
  v->run->immediate_exit = 1;
  pthread_kill(v->thread, KickSignal());
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Value Vm::ExitErrno(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Get(info)->exitErrno);
}

Napi::Value Vm::KeepAlive(const Napi::CallbackInfo& info) {
  bool on = info[0].ToBoolean();
  if (on != keepAlive_ && !disposed_) {
    if (on)
      wake_.Ref(info.Env());
    else
      wake_.Unref(info.Env());
    keepAlive_ = on;
  }
  return info.Env().Undefined();
}

}  // namespace vmm
