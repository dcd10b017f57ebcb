// Guest memory: mappings the VMM owns for KVM memory slots, exposed to JS as external
// ArrayBuffers (no copies). mmap/munmap/memfd only; no ioctl here.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "binding.h"
#include "sys.h"

namespace vmm {

struct Mapping {
  void* addr;
  size_t size;
  int fd;
  bool released;  // pages dropped by unmapMemory; the address range stays reserved (see below)
  int refs;       // chunk ArrayBuffers still alive
};

// V8 (Node 20) caps a typed array at 2^32 elements, so JS sees a mapping as chunks of 1 GiB, each
// an external ArrayBuffer over its part of the one contiguous mapping KVM gets as a memory slot.
static constexpr size_t kChunk = size_t(1) << 30;

static std::mutex gMappingsLock;
static std::set<Mapping*> gMappings;  // live mappings, so unmap can validate what JS hands back

// Drops the guest pages but keeps the virtual range reserved (PROT_NONE) until the ArrayBuffer
// itself is collected: V8 may still hold the detached backing store, and a new mapping at the
// same address while it lives corrupts V8's bookkeeping (seen as a double free).
static Napi::Value Wrap(Napi::Env env, void* addr, size_t size, int fd);

static void Release(Mapping* m) {
  if (m->released) return;
  mmap(m->addr, m->size, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m->fd >= 0) close(m->fd);
  m->fd = -1;
  m->released = true;
}

// mapMemory(size, memfdName | null, hugepages, file?) -> { buffer, address, fd }
// With `file` (a snapshot's memory file), the mapping is MAP_PRIVATE over the file: pages load on
// first touch and guest writes are copy-on-write, so a restore reads no RAM up front, clones share
// the page cache, and the file itself is never written.
Napi::Value MapMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t size = size_t(U64(info[0]));
  bool useMemfd = info[1].IsString();
  bool huge = info.Length() > 2 && info[2].ToBoolean();
  int fd = -1;
  if (info.Length() > 3 && info[3].IsString()) {
    std::string path = info[3].As<Napi::String>();
    int file = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (file < 0) ThrowSys(env, errno, "open");
    struct stat st;
    if (fstat(file, &st) < 0 || size_t(st.st_size) < size) {
      close(file);
      throw Napi::RangeError::New(env, "mapMemory: " + path + " is shorter than guest RAM");
    }
    // SAFETY: a new mapping (no MAP_FIXED) of `size` bytes the file holds (checked above); PROT_WRITE
    // on a read-only fd is allowed for MAP_PRIVATE, whose writes go to private copies, never the file.
    void* addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, file, 0);
    int e = errno;
    close(file);  // the mapping keeps the file open
    if (addr == MAP_FAILED) ThrowSys(env, e, "mmap");
    return Wrap(env, addr, size, -1);
  }
  if (useMemfd) {
    std::string name = info[1].As<Napi::String>();
    fd = memfd_create(name.c_str(), MFD_CLOEXEC | (huge ? MFD_HUGETLB : 0));
    if (fd < 0) ThrowSys(env, errno, "memfd_create");
    if (ftruncate(fd, off_t(size)) < 0) {
      int e = errno;
      close(fd);
      ThrowSys(env, e, "ftruncate");
    }
  }
  int flags = MAP_NORESERVE | (useMemfd ? MAP_SHARED : (MAP_PRIVATE | MAP_ANONYMOUS));
  if (huge && !useMemfd) flags |= MAP_HUGETLB;
  void* addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (addr == MAP_FAILED) {
    int e = errno;
    if (fd >= 0) close(fd);
    ThrowSys(env, e, "mmap");
  }
  return Wrap(env, addr, size, fd);
}

// The mapping as chunk ArrayBuffers plus its address and fd, registered for unmapMemory.
static Napi::Value Wrap(Napi::Env env, void* addr, size_t size, int fd) {
  size_t chunks = (size + kChunk - 1) / kChunk;
  auto* m = new Mapping{addr, size, fd, false, int(chunks)};
  {
    std::lock_guard<std::mutex> g(gMappingsLock);
    gMappings.insert(m);
  }
  Napi::Array buffers = Napi::Array::New(env, chunks);
  for (size_t i = 0; i < chunks; i++) {
    size_t len = std::min(kChunk, size - i * kChunk);
    buffers.Set(uint32_t(i), Napi::ArrayBuffer::New(env, static_cast<uint8_t*>(addr) + i * kChunk, len,
                                                    [](Napi::Env, void*, Mapping* m) {
                                                      std::lock_guard<std::mutex> g(gMappingsLock);
                                                      if (--m->refs > 0) return;
                                                      gMappings.erase(m);
                                                      Release(m);
                                                      munmap(m->addr, m->size);
                                                      delete m;
                                                    },
                                                    m));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("buffers", buffers);
  out.Set("chunkSize", Napi::Number::New(env, double(kChunk)));
  out.Set("address", Big(env, reinterpret_cast<uint64_t>(addr)));
  out.Set("fd", Napi::Number::New(env, fd));
  return out;
}

// unmapMemory(buffers): detaches the chunk ArrayBuffers, so any view of them becomes empty instead
// of pointing at released memory, then gives the pages back. Calling it twice is harmless.
Napi::Value UnmapMemory(const Napi::CallbackInfo& info) {
  Napi::Array buffers = info[0].As<Napi::Array>();
  if (buffers.Length() == 0) return info.Env().Undefined();
  Napi::ArrayBuffer first = buffers.Get(uint32_t(0)).As<Napi::ArrayBuffer>();
  if (first.ByteLength() == 0) return info.Env().Undefined();  // already detached
  void* data = first.Data();
  std::lock_guard<std::mutex> g(gMappingsLock);
  Mapping* found = nullptr;
  for (Mapping* m : gMappings)
    if (m->addr == data && !m->released) found = m;
  if (!found) throw Napi::TypeError::New(info.Env(), "unmapMemory: buffers were not created by mapMemory");
  for (uint32_t i = 0; i < buffers.Length(); i++) buffers.Get(i).As<Napi::ArrayBuffer>().Detach();
  Release(found);
  return info.Env().Undefined();
}

}  // namespace vmm
