// Shared by the files of the @vmm/host native module: Node-style system errors and argument
// conversions, and the functions each file registers on the module's exports.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace vmm_host {

// A Node-style system error: message "<op> failed: <CODE> (<strerror>)", with `code` ("EINVAL"),
// `errno` (negative, as Node's own fs/net errors carry it), `syscall` and, for ioctls, `ioctl`.
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

// fd.cc: closeFd, eventfd, eventfdRead, eventfdWrite, readFd, writevFd, FdWatch
void InitFd(Napi::Env env, Napi::Object exports);
// tap.cc: openTap, setTapOffload
void InitTap(Napi::Env env, Napi::Object exports);
// pages.cc: discardMemory (madvise), deallocateFileRange (fallocate)
void InitPages(Napi::Env env, Napi::Object exports);
// disk.cc: lockFile (flock), blockDeviceSize (BLKGETSIZE64)
void InitDisk(Napi::Env env, Napi::Object exports);
// mknod.cc: mknodAt (FIFOs and sockets only)
void InitMknod(Napi::Env env, Napi::Object exports);
// heap.cc: tuneHeap (mallopt), trimHeap (malloc_trim)
void InitHeap(Napi::Env env, Napi::Object exports);
// pty.cc: openPty, sendFd (SCM_RIGHTS)
void InitPty(Napi::Env env, Napi::Object exports);
// seccomp.cc: seccompInstall, seccompReporter, seccompRecords, seccompTrampoline
void InitSeccomp(Napi::Env env, Napi::Object exports);
// netns.cc: openTapIn (a TAP made inside another network namespace), tapInfo (TUNGETIFF)
void InitNetns(Napi::Env env, Napi::Object exports);

}  // namespace vmm_host
