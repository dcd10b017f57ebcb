// seccomp(2) for the process: installing a filter program compiled in TypeScript
// (src/seccomp/bpf.ts), the SIGSYS handler that reports a denied call, and the recorder that a
// record-mode filter (SECCOMP_RET_USER_NOTIF for unlisted calls) reports to.
// Documentation/userspace-api/seccomp_filter.rst; man 2 seccomp; include/uapi/linux/seccomp.h.
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ucontext.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <vector>

#include "host.h"

namespace vmm_host {
namespace {

// ---- The record mode's re-issue of a trapped call -------------------------------------------
// A filter with one listener per process cannot notify for the vCPU threads' own filter
// (seccomp(2): EBUSY for a second NEW_LISTENER), so in record mode that filter traps with
// si_errno kRecordTrap and the handler notes the call and makes it itself through this
// trampoline; the filter allows calls whose instruction pointer is the trampoline's (the address
// after its `syscall`, which seccomp_data.instruction_pointer reports).
extern "C" long vmm_seccomp_syscall6(long nr, long a, long b, long c, long d, long e, long f);
extern "C" char vmm_seccomp_syscall6_ret[];
asm(R"(
  .text
  .globl vmm_seccomp_syscall6
  .type vmm_seccomp_syscall6, @function
vmm_seccomp_syscall6:
  mov %rdi, %rax
  mov %rsi, %rdi
  mov %rdx, %rsi
  mov %rcx, %rdx
  mov %r8, %r10
  mov %r9, %r8
  mov 8(%rsp), %r9
  syscall
  .globl vmm_seccomp_syscall6_ret
vmm_seccomp_syscall6_ret:
  ret
  .size vmm_seccomp_syscall6, .-vmm_seccomp_syscall6
)");
constexpr int kRecordTrap = 3;
void Note(int kind, int tid, int nr);

// ---- Reporting a denied call (SECCOMP_RET_TRAP raises SIGSYS on the calling thread) ----------
// The handler is async-signal-safe: fixed buffers, raw system calls, nothing allocated. The calls
// it makes (prctl PR_GET_NAME, gettid, write, exit_group) are in every profile; were one denied,
// the kernel would kill the process with SIGSYS itself (a nested SIGSYS is forced), still not a hang.
constexpr int kMaxSyscall = 512;
char g_names[kMaxSyscall][24];
int g_exitCode = 159;

void Append(char* buf, size_t& len, size_t cap, const char* s) {
  while (*s && len + 1 < cap) buf[len++] = *s++;
}
void AppendNum(char* buf, size_t& len, size_t cap, long n) {
  char tmp[24];
  int i = 0;
  if (n < 0) {
    Append(buf, len, cap, "-");
    n = -n;
  }
  do tmp[i++] = char('0' + n % 10);
  while ((n /= 10) > 0 && i < 23);
  while (i > 0 && len + 1 < cap) buf[len++] = tmp[--i];
}

void OnSigsys(int, siginfo_t* si, void* ucontext) {
  if (si->si_errno == kRecordTrap) {
    auto* g = static_cast<ucontext_t*>(ucontext)->uc_mcontext.gregs;
    Note(2, int(vmm_seccomp_syscall6(SYS_gettid, 0, 0, 0, 0, 0, 0)), si->si_syscall);
    g[REG_RAX] = vmm_seccomp_syscall6(si->si_syscall, g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10], g[REG_R8], g[REG_R9]);
    return;
  }
  char msg[512];
  size_t len = 0;
  char thread[17] = {0};
  syscall(SYS_prctl, PR_GET_NAME, thread, 0, 0, 0);
  long tid = syscall(SYS_gettid);
  int nr = si->si_syscall;
  Append(msg, len, sizeof msg, "vmm: seccomp: thread \"");
  Append(msg, len, sizeof msg, thread);
  Append(msg, len, sizeof msg, "\" (tid ");
  AppendNum(msg, len, sizeof msg, tid);
  Append(msg, len, sizeof msg, ") made a system call the ");
  Append(msg, len, sizeof msg, si->si_errno == 2 ? "vCPU" : "process");
  Append(msg, len, sizeof msg, " filter denies: ");
  if (si->si_arch != 0xc000003e) {
    Append(msg, len, sizeof msg, "a call of another ABI (audit arch 0x");
    static const char hex[] = "0123456789abcdef";
    for (int s = 28; s >= 0; s -= 4) msg[len < sizeof msg - 1 ? len++ : len] = hex[(si->si_arch >> s) & 15];
    Append(msg, len, sizeof msg, "), number ");
    AppendNum(msg, len, sizeof msg, nr);
  } else {
    Append(msg, len, sizeof msg, nr >= 0 && nr < kMaxSyscall && g_names[nr][0] ? g_names[nr] : "syscall");
    Append(msg, len, sizeof msg, " (");
    AppendNum(msg, len, sizeof msg, nr);
    Append(msg, len, sizeof msg, ")");
  }
  if (nr == SYS_ioctl) {  // the request says which device the call was for
    Append(msg, len, sizeof msg, " request 0x");
    unsigned long req = static_cast<ucontext_t*>(ucontext)->uc_mcontext.gregs[REG_RSI] & 0xffffffffUL;
    static const char hex[] = "0123456789abcdef";
    for (int sh = 28; sh >= 0; sh -= 4) msg[len < sizeof msg - 1 ? len++ : len] = hex[(req >> sh) & 15];
  }
  Append(msg, len, sizeof msg, "; stopping (exit code ");
  AppendNum(msg, len, sizeof msg, g_exitCode);
  Append(msg, len, sizeof msg, "). --no-seccomp turns the filters off; README \"seccomp\" says how to allow a call\n");
  syscall(SYS_write, 2, msg, len);
  syscall(SYS_exit_group, g_exitCode);
}

// seccompReporter(names, exitCode): names[nr] is call nr's name (syscalls.ts); installs the handler.
Napi::Value Reporter(const Napi::CallbackInfo& info) {
  Napi::Array names = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < names.Length() && i < kMaxSyscall; i++) {
    Napi::Value v = names.Get(i);
    if (!v.IsString()) continue;
    std::string s = v.As<Napi::String>();
    snprintf(g_names[i], sizeof g_names[i], "%s", s.c_str());
  }
  g_exitCode = Int(info[1]);
  struct sigaction sa {};
  sa.sa_sigaction = OnSigsys;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_SIGINFO;
  if (sigaction(SIGSYS, &sa, nullptr) != 0) ThrowSys(info.Env(), errno, "sigaction");
  return info.Env().Undefined();
}

// ---- Record mode: a supervisor thread per listener answers "continue" and notes the call -----
struct Record {
  int kind, tid, nr;
  char thread[16];
};
std::atomic_flag g_lock = ATOMIC_FLAG_INIT;  // a spin lock: a futex here could itself be recorded
Record g_records[8192];
std::atomic<int> g_count{0};

// The thread's name, read through the trampoline (record-mode filters let its calls through, so
// the recorder never waits on itself): /proc/self/task/<tid>/comm, or "?" once the thread is gone.
void ThreadName(int tid, char out[16]) {
  char path[48] = "/proc/self/task/";
  size_t len = strlen(path);
  AppendNum(path, len, sizeof path, tid);
  Append(path, len, sizeof path, "/comm");
  path[len] = 0;
  memcpy(out, "?", 2);
  long fd = vmm_seccomp_syscall6(SYS_openat, AT_FDCWD, long(path), O_RDONLY | O_CLOEXEC, 0, 0, 0);
  if (fd < 0) return;
  long n = vmm_seccomp_syscall6(SYS_read, fd, long(out), 15, 0, 0, 0);
  vmm_seccomp_syscall6(SYS_close, fd, 0, 0, 0, 0, 0);
  if (n <= 0) return;
  out[n] = 0;
  if (out[n - 1] == '\n') out[n - 1] = 0;
}

void Note(int kind, int tid, int nr) {
  while (g_lock.test_and_set(std::memory_order_acquire)) {
  }
  int n = g_count.load(std::memory_order_relaxed);
  bool seen = false;
  for (int i = 0; i < n && !seen; i++) seen = g_records[i].kind == kind && g_records[i].tid == tid && g_records[i].nr == nr;
  if (!seen && n < int(sizeof g_records / sizeof g_records[0])) {
    g_records[n] = {kind, tid, nr, {0}};
    // A name already read for this thread, else read it now (the thread is waiting on us, so alive).
    for (int i = 0; i < n && !g_records[n].thread[0]; i++)
      if (g_records[i].tid == tid) memcpy(g_records[n].thread, g_records[i].thread, 16);
    if (!g_records[n].thread[0]) ThreadName(tid, g_records[n].thread);
    g_count.store(n + 1, std::memory_order_release);
  }
  g_lock.clear(std::memory_order_release);
}

struct Watch {
  std::atomic<int> fd{-1};
  std::atomic<int> ready{0};  // the thread has started (the C library's start-up calls are behind it)
  int kind = 0;
};

// Makes only the calls a record-mode filter always allows (futex, the two NOTIF ioctls): were it
// to make a call its own filter notifies, it would wait for itself.
void* Supervise(void* arg) {
  auto* w = static_cast<Watch*>(arg);
  w->ready.store(1, std::memory_order_release);
  while (w->fd.load(std::memory_order_acquire) == -1)
    syscall(SYS_futex, reinterpret_cast<int*>(&w->fd), FUTEX_WAIT_PRIVATE, -1, nullptr, nullptr, 0);
  int fd = w->fd.load();
  for (;;) {
    struct seccomp_notif req {};
    if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
      if (errno == EINTR) continue;
      break;  // ENOENT: no task uses the filter any more
    }
    Note(w->kind, int(req.pid), req.data.nr);
    struct seccomp_notif_resp resp {};
    resp.id = req.id;
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;  // let the call run: record, never deny
    ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
  }
  return nullptr;
}

Watch* StartSupervisor(Napi::Env env, int kind) {
  auto* w = new Watch();  // lives as long as the process: the filter does
  w->kind = kind;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);  // the supervisor takes no signals
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  int r = pthread_create(&t, &attr, Supervise, w);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (r != 0) ThrowSys(env, r, "pthread_create");
  pthread_setname_np(t, "seccomp-record");
  pthread_detach(t);
  // Not before the thread runs: its start-up calls (rseq, set_robust_list, the signal mask) made
  // after the filter went on would wait for the recorder, which is that thread.
  while (!w->ready.load(std::memory_order_acquire)) sched_yield();
  return w;
}

void Give(Watch* w, int fd) {
  w->fd.store(fd, std::memory_order_release);
  syscall(SYS_futex, reinterpret_cast<int*>(&w->fd), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

// seccompInstall(program, { tsync, record, kind }): no_new_privs, then the filter on this thread
// (tsync: on every thread of the process). record: the filter's listener goes to a new supervisor.
Napi::Value Install(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  Napi::Object opts = info[1].As<Napi::Object>();
  bool tsync = opts.Get("tsync").ToBoolean();
  bool record = opts.Get("record").ToBoolean();
  int kind = opts.Has("kind") ? Int(opts.Get("kind")) : 1;
  if (bytes.ByteLength() % sizeof(sock_filter) != 0 || bytes.ByteLength() == 0)
    throw Napi::TypeError::New(env, "seccompInstall: the program must be a non-empty array of struct sock_filter");
  std::vector<sock_filter> insns(bytes.ByteLength() / sizeof(sock_filter));
  memcpy(insns.data(), bytes.Data(), bytes.ByteLength());
  sock_fprog prog{uint16_t(insns.size()), insns.data()};
  // Without no_new_privs an unprivileged process may not install a filter; with it, an exec can
  // never gain privileges (setuid) past the filter.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ThrowSys(env, errno, "prctl");
  Watch* w = record ? StartSupervisor(env, kind) : nullptr;  // before the filter: see Supervise
  unsigned flags = (tsync ? SECCOMP_FILTER_FLAG_TSYNC : 0) |
                   (record ? SECCOMP_FILTER_FLAG_NEW_LISTENER | (tsync ? SECCOMP_FILTER_FLAG_TSYNC_ESRCH : 0) : 0);
  long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
  if (r < 0) {
    int err = errno;
    if (w) Give(w, -2);  // nothing to supervise: the thread ends (fd -2 fails its ioctl)
    ThrowSys(env, err, "seccomp");
  }
  if (tsync && !record && r > 0)
    throw Napi::Error::New(env, "seccomp: thread " + std::to_string(r) + " cannot take the process filter (it has a filter of its own)");
  if (w) Give(w, int(r));
  return env.Undefined();
}

// seccompRecords() -> [{ kind, tid, nr, thread }]: the distinct calls recorded so far.
Napi::Value Records(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int n = g_count.load(std::memory_order_acquire);
  Napi::Array out = Napi::Array::New(env, size_t(n));
  for (int i = 0; i < n; i++) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("kind", g_records[i].kind);
    r.Set("tid", g_records[i].tid);
    r.Set("nr", g_records[i].nr);
    r.Set("thread", std::string(g_records[i].thread, strnlen(g_records[i].thread, 16)));
    out.Set(uint32_t(i), r);
  }
  return out;
}

// seccompTrampoline() -> the instruction pointer a record-mode vCPU filter allows (BigInt).
Napi::Value Trampoline(const Napi::CallbackInfo& info) {
  return Napi::BigInt::New(info.Env(), uint64_t(reinterpret_cast<uintptr_t>(vmm_seccomp_syscall6_ret)));
}

}  // namespace

void InitSeccomp(Napi::Env env, Napi::Object exports) {
  exports.Set("seccompReporter", Napi::Function::New(env, Reporter));
  exports.Set("seccompInstall", Napi::Function::New(env, Install));
  exports.Set("seccompRecords", Napi::Function::New(env, Records));
  exports.Set("seccompTrampoline", Napi::Function::New(env, Trampoline));
}

}  // namespace vmm_host
