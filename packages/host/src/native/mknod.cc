// mknodat(2) for FIFOs and sockets (virtio-9p's Tmknod): Node's fs has no mknod. Device nodes are
// refused here too (EPERM), whatever the caller asks: a device node made on the host names a host
// device, and nothing in vmm has a reason to make one.
#include <fcntl.h>
#include <sys/stat.h>

#include "host.h"

namespace vmm_host {

// mknodAt(dirfd, name, mode): creates FIFO or socket `name` in directory `dirfd` (an O_PATH
// descriptor works: *at calls accept one as the directory). `name` is one component (checked
// here: no '/', since the caller's point is to stay inside dirfd); it is never followed.
static Napi::Value MknodAt(const Napi::CallbackInfo& info) {
  int dirfd = Int(info[0]);
  std::string name = info[1].As<Napi::String>().Utf8Value();
  uint32_t mode = U32(info[2]);
  if (name.empty() || name.find('/') != std::string::npos || name.find('\0') != std::string::npos)
    throw Napi::RangeError::New(info.Env(), "mknodAt: the name must be one path component");
  mode_t type = mode & S_IFMT;
  if (type != S_IFIFO && type != S_IFSOCK) ThrowSys(info.Env(), EPERM, "mknodat");
  if (mknodat(dirfd, name.c_str(), mode_t(mode & (S_IFMT | 07777)), 0) < 0) ThrowSys(info.Env(), errno, "mknodat");
  return info.Env().Undefined();
}

void InitMknod(Napi::Env env, Napi::Object exports) { exports.Set("mknodAt", Napi::Function::New(env, MknodAt)); }

}  // namespace vmm_host
