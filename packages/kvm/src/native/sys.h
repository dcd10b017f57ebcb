// Small helpers shared by the files of the binding: errno-preserving errors, argument conversions,
// the ioctl wrapper, futexes, time.
#pragma once

#include <napi.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <linux/futex.h>
#include <sched.h>
#include <string>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace vmm {

// Builds a Node-style system error: message "<op> failed: <CODE> (<strerror>)", with
// `code` ("EINVAL"), `errno` (negative, as Node's own fs/net errors carry it), `syscall` and,
// for ioctls, `ioctl` (the request's name). The TypeScript facade turns it into a KvmError.
inline Napi::Error SysError(Napi::Env env, int err, const char* syscall, const char* ioctlName = nullptr) {
  const char* code = strerrorname_np(err);
  std::string what = ioctlName ? ioctlName : syscall;
  std::string msg = what + " failed: " + (code ? code : "E?") + " (" + strerror(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code ? code : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (ioctlName) e.Set("ioctl", Napi::String::New(env, ioctlName));
  return e;
}

[[noreturn]] inline void ThrowSys(Napi::Env env, int err, const char* syscall, const char* ioctlName = nullptr) {
  throw SysError(env, err, syscall, ioctlName);
}

inline int Int(const Napi::Value& v) { return v.As<Napi::Number>().Int32Value(); }
inline uint32_t U32(const Napi::Value& v) { return v.As<Napi::Number>().Uint32Value(); }

inline uint64_t U64(const Napi::Value& v) {
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  return uint64_t(v.As<Napi::Number>().Int64Value());
}

inline Napi::BigInt Big(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }

inline uint64_t GetU64(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsUndefined() ? 0 : U64(v);
}
inline uint32_t GetU32(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined()) return 0;
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  if (v.IsBigInt()) return uint32_t(U64(v));
  return v.As<Napi::Number>().Uint32Value();
}

// A copy of `n` bytes as a new ArrayBuffer JS owns: how every kernel struct reaches TypeScript
// (src/state/ decodes it with one layout table per struct).
inline Napi::ArrayBuffer CopyOut(Napi::Env env, const void* data, size_t n) {
  Napi::ArrayBuffer b = Napi::ArrayBuffer::New(env, n);
  memcpy(b.Data(), data, n);
  return b;
}

// The bytes of a Uint8Array argument that must hold exactly `n` bytes (a kernel struct encoded by
// TypeScript), or a RangeError naming what was expected.
inline const uint8_t* BytesIn(Napi::Env env, const Napi::Value& v, size_t n, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(env, std::string(what) + ": expected a Uint8Array");
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  if (a.ByteLength() != n)
    throw Napi::RangeError::New(env, std::string(what) + ": expected " + std::to_string(n) + " bytes, got " +
                                         std::to_string(a.ByteLength()));
  return a.Data();
}

// ioctl() again while a signal interrupted it (the JS thread gets signals: profilers' SIGPROF,
// for one). Not for KVM_RUN, whose EINTR is how a kick arrives.
inline int RetryIoctl(int fd, unsigned long req, unsigned long arg) {
  int r;
  do r = ioctl(fd, req, arg);
  while (r < 0 && errno == EINTR);
  return r;
}
template <typename T>
inline int RetryIoctl(int fd, unsigned long req, T* arg) {
  return RetryIoctl(fd, req, reinterpret_cast<unsigned long>(arg));
}

// Runs an ioctl and throws a Node-style error carrying errno and the request's name.
#define IOCTL(env, fd, req, arg)                      \
  ({                                                  \
    int _r = ::vmm::RetryIoctl((fd), (req), (arg));   \
    if (_r < 0) ::vmm::ThrowSys((env), errno, "ioctl", #req); \
    _r;                                               \
  })

inline long FutexWait(std::atomic<uint32_t>* word, uint32_t expected) {
  // SAFETY: word is a live, 4-byte aligned atomic owned by the caller's object for the duration.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

inline void FutexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

inline uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

inline void CpuRelax() { __builtin_ia32_pause(); }

// Spinning is only a win while the other side has a CPU. After the first few microseconds a
// spinner also offers its CPU to other runnable threads (sched_yield), so on an oversubscribed
// machine the thread it is waiting for gets to run instead of being starved by the spin.
static constexpr uint64_t kPureSpinNs = 3000;

inline bool SpinStep(unsigned iter, uint64_t start, uint64_t deadline) {
  CpuRelax();
  if ((iter & 15) != 0) return true;
  uint64_t now = MonotonicNs();
  if (now > deadline) return false;
  if (now - start > kPureSpinNs && (iter & 63) == 0) sched_yield();
  return true;
}

// Waits until `word` differs from `seen`: spins for up to `spinNs` (the other side usually
// answers within a microsecond on the hot path), then sleeps on the futex. `sleeping` is set
// around the sleep so the other side knows it must wake us (Dekker-style: we store `sleeping`
// then load `word`; the poster stores `word` then loads `sleeping`; seq_cst orders both).
inline uint32_t WaitChange(std::atomic<uint32_t>& word, uint32_t seen, std::atomic<uint32_t>& sleeping,
                           uint64_t spinNs) {
  uint32_t v = word.load(std::memory_order_acquire);
  if (v != seen) return v;
  if (spinNs > 0) {
    // The answer usually comes within a microsecond: spin a little before even reading the clock.
    for (unsigned i = 0; i < 256; i++) {
      CpuRelax();
      v = word.load(std::memory_order_acquire);
      if (v != seen) return v;
    }
    uint64_t start = MonotonicNs(), deadline = start + spinNs;
    for (unsigned i = 1; SpinStep(i, start, deadline); i++) {
      v = word.load(std::memory_order_acquire);
      if (v != seen) return v;
    }
  }
  for (;;) {
    sleeping.store(1, std::memory_order_seq_cst);
    v = word.load(std::memory_order_seq_cst);
    if (v != seen) {
      sleeping.store(0, std::memory_order_relaxed);
      return v;
    }
    FutexWait(&word, seen);
    sleeping.store(0, std::memory_order_relaxed);
    v = word.load(std::memory_order_acquire);
    if (v != seen) return v;
  }
}

// The poster's half of WaitChange.
inline void PostChange(std::atomic<uint32_t>& word, std::atomic<uint32_t>& sleeping) {
  word.fetch_add(1, std::memory_order_seq_cst);
  if (sleeping.load(std::memory_order_seq_cst)) FutexWake(&word);
}

}  // namespace vmm
