// Giving memory and disk space back: madvise(MADV_DONTNEED) on guest RAM (the balloon) and
// fallocate(2) hole punching on disk images (virtio-blk DISCARD / WRITE_ZEROES).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>

#include <climits>

#include "host.h"

namespace vmm_host {

// discardMemory(buffer, offset, length): gives the pages of a guest RAM chunk back to the host
// (MADV_DONTNEED; they read as zero afterwards, or as the memfd's contents).
static Napi::Value DiscardMemory(const Napi::CallbackInfo& info) {
  Napi::ArrayBuffer buf = info[0].As<Napi::ArrayBuffer>();
  size_t off = size_t(U64(info[1])), len = size_t(U64(info[2]));
  if (off % 4096 || len % 4096 || off + len > buf.ByteLength() || off + len < off)
    throw Napi::RangeError::New(info.Env(), "discardMemory: range must be page-aligned and inside the buffer");
  // The range lies inside the ArrayBuffer (checked above), whose memory JS keeps alive during the
  // call; for guest RAM that is a chunk of a mapping made by @vmm/kvm's mapMemory.
  if (madvise(static_cast<uint8_t*>(buf.Data()) + off, len, MADV_DONTNEED) < 0) ThrowSys(info.Env(), errno, "madvise");
  return info.Env().Undefined();
}

// deallocateFileRange(fd, offset, length, zeroOnly): fallocate(2) on a disk image. zeroOnly false:
// FALLOC_FL_PUNCH_HOLE | KEEP_SIZE (the blocks go back to the file system, the range reads as
// zeroes); true: FALLOC_FL_ZERO_RANGE | KEEP_SIZE (zeroes, blocks may stay allocated). Errors keep
// errno: EOPNOTSUPP where the file system has neither, so callers can fall back to writing zeroes.
static Napi::Value DeallocateFileRange(const Napi::CallbackInfo& info) {
  int fd = Int(info[0]);
  uint64_t off = U64(info[1]), len = U64(info[2]);
  bool zeroOnly = info[3].ToBoolean();
  if (off > uint64_t(INT64_MAX) || len > uint64_t(INT64_MAX) - off)
    throw Napi::RangeError::New(info.Env(), "deallocateFileRange: range beyond the largest file offset");
  int mode = FALLOC_FL_KEEP_SIZE | (zeroOnly ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE);
  int r;
  do r = fallocate(fd, mode, off_t(off), off_t(len));
  while (r < 0 && errno == EINTR);
  if (r < 0) ThrowSys(info.Env(), errno, "fallocate");
  return info.Env().Undefined();
}

void InitPages(Napi::Env env, Napi::Object exports) {
  exports.Set("discardMemory", Napi::Function::New(env, DiscardMemory));
  exports.Set("deallocateFileRange", Napi::Function::New(env, DeallocateFileRange));
}

}  // namespace vmm_host
