// Disk images: an advisory lock so two machines never write one image at once (as QEMU's
// image locking and Cloud Hypervisor's do), and the size of a block device (st_size is 0 there).
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>

#include "host.h"

namespace vmm_host {

// lockFile(fd, exclusive): flock(2) LOCK_EX or LOCK_SH with LOCK_NB. A flock belongs to the open
// file description, so a second open(2) of the same image (another machine, in this process or
// another) conflicts, and the lock goes with the fd's close. Returns false when another holder's
// lock conflicts (EWOULDBLOCK); other errors throw with errno.
static Napi::Value LockFile(const Napi::CallbackInfo& info) {
  int fd = Int(info[0]);
  int op = (info[1].ToBoolean() ? LOCK_EX : LOCK_SH) | LOCK_NB;
  int r;
  do r = flock(fd, op);
  while (r < 0 && errno == EINTR);
  if (r < 0 && errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
  if (r < 0) ThrowSys(info.Env(), errno, "flock");
  return Napi::Boolean::New(info.Env(), true);
}

// blockDeviceSize(fd): BLKGETSIZE64 (linux/fs.h), the device's size in bytes, as a BigInt.
static Napi::Value BlockDeviceSize(const Napi::CallbackInfo& info) {
  int fd = Int(info[0]);
  uint64_t size = 0;
  // SAFETY: BLKGETSIZE64 writes one uint64_t through the pointer, which points at `size` on this
  // stack frame; the kernel checks that fd is a block device (ENOTTY otherwise).
  if (ioctl(fd, BLKGETSIZE64, &size) < 0) ThrowSys(info.Env(), errno, "ioctl(BLKGETSIZE64)");
  return Napi::BigInt::New(info.Env(), size);
}

void InitDisk(Napi::Env env, Napi::Object exports) {
  exports.Set("lockFile", Napi::Function::New(env, LockFile));
  exports.Set("blockDeviceSize", Napi::Function::New(env, BlockDeviceSize));
}

}  // namespace vmm_host
