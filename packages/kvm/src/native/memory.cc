// Guest memory: mappings the VMM owns for KVM memory slots, exposed to JS as external
// ArrayBuffers (no copies). mmap/munmap/memfd, and madvise/fallocate/fadvise to give pages back; no ioctl here.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "binding.h"
#include "sys.h"

namespace vmm {

struct Mapping {
  void* addr;
  size_t size;
  int fd;         // the memfd (MAP_SHARED), or -1
  int file;       // a snapshot's memory file this mapping is MAP_PRIVATE over (kept for fadvise), or -1
  bool released;  // pages dropped by unmapMemory; the address range stays reserved (see below)
  int refs;       // chunk ArrayBuffers still alive
  // For a file mapping: the ranges discardMemory replaced with anonymous memory, start -> end,
  // merged when they touch (the kernel merges the VMAs then too). Each separate range splits the
  // file VMA, so their number is bounded (kMaxAnonRanges) below the kernel's vm.max_map_count.
  std::map<size_t, size_t> anon;
};

// 8192 ranges are at most ~16k VMAs (each range and the file piece after it), a quarter of the
// default vm.max_map_count (65530), which the rest of the process (V8's heap, libraries) needs too.
static constexpr size_t kMaxAnonRanges = 8192;

// V8 (Node 20) caps a typed array at 2^32 elements, so JS sees a mapping as chunks of 1 GiB, each
// an external ArrayBuffer over its part of the one contiguous mapping KVM gets as a memory slot.
static constexpr size_t kChunk = size_t(1) << 30;

static std::mutex gMappingsLock;
static std::set<Mapping*> gMappings;  // live mappings, so unmap can validate what JS hands back

// Drops the guest pages but keeps the virtual range reserved (PROT_NONE) until the ArrayBuffer
// itself is collected: V8 may still hold the detached backing store, and a new mapping at the
// same address while it lives corrupts V8's bookkeeping (seen as a double free).
static Napi::Value Wrap(Napi::Env env, void* addr, size_t size, int fd, int file = -1);

static void Release(Mapping* m) {
  if (m->released) return;
  mmap(m->addr, m->size, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m->fd >= 0) close(m->fd);
  if (m->file >= 0) close(m->file);
  m->fd = -1;
  m->file = -1;
  m->anon.clear();
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
    if (addr == MAP_FAILED) {
      close(file);
      ThrowSys(env, e, "mmap");
    }
    // The fd stays open (closed at release) for discardMemory's posix_fadvise.
    return Wrap(env, addr, size, -1, file);
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
static Napi::Value Wrap(Napi::Env env, void* addr, size_t size, int fd, int file) {
  size_t chunks = (size + kChunk - 1) / kChunk;
  auto* m = new Mapping{addr, size, fd, file, false, int(chunks), {}};
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

// The ranges of m->anon that [start, end) touches: [first, last).
static std::pair<std::map<size_t, size_t>::iterator, std::map<size_t, size_t>::iterator> Touching(
    Mapping* m, size_t start, size_t end) {
  auto first = m->anon.upper_bound(start);
  if (first != m->anon.begin() && std::prev(first)->second >= start) first = std::prev(first);
  auto last = first;
  while (last != m->anon.end() && last->first <= end) ++last;
  return {first, last};
}

// Records [start, end) as anonymous, merged with the ranges it touches; returns the merged range.
static std::pair<size_t, size_t> RecordAnonRange(Mapping* m, size_t start, size_t end) {
  auto [first, last] = Touching(m, start, end);
  for (auto j = first; j != last; ++j) {
    start = std::min(start, j->first);
    end = std::max(end, j->second);
  }
  m->anon.erase(first, last);
  m->anon.emplace(start, end);
  return {start, end};
}

// Whether [start, end) can become anonymous without one separate range more than kMaxAnonRanges.
static bool AnonRangeFits(Mapping* m, size_t start, size_t end) {
  auto [first, last] = Touching(m, start, end);
  return first != last || m->anon.size() < kMaxAnonRanges;
}

// discardMemory(buffers, offset, length) -> bool: gives [offset, +length) of a mapping made by
// mapMemory back to the host so that it reads as zeroes afterwards (a balloon's inflated pages).
//  - anonymous memory: MADV_DONTNEED (the range faults in again as zero pages).
//  - a memfd (MAP_SHARED): fallocate PUNCH_HOLE; MADV_DONTNEED would read the memfd's bytes again.
//  - a snapshot's file (MAP_PRIVATE): MADV_DONTNEED drops only the private copies, and the range
//    would read the file's bytes again and keep its page cache mapped. So the range is replaced by
//    fresh anonymous memory (mmap MAP_FIXED: one step under the mm lock, so no thread sees it
//    unmapped; KVM's MMU notifier drops the guest's mappings of the old pages and the next guest
//    access faults in the new ones), and the file's pages there are dropped from the page cache
//    where nothing else maps them (POSIX_FADV_DONTNEED; another clone's mapped pages stay).
//    Past kMaxAnonRanges separate ranges it falls back to MADV_DONTNEED and answers false.
Napi::Value DiscardMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array buffers = info[0].As<Napi::Array>();
  size_t off = size_t(U64(info[1])), len = size_t(U64(info[2]));
  if (buffers.Length() == 0) throw Napi::TypeError::New(env, "discardMemory: no buffers");
  void* data = buffers.Get(uint32_t(0)).As<Napi::ArrayBuffer>().Data();
  std::lock_guard<std::mutex> g(gMappingsLock);
  Mapping* m = nullptr;
  for (Mapping* x : gMappings)
    if (x->addr == data && !x->released) m = x;
  if (!m) throw Napi::TypeError::New(env, "discardMemory: buffers were not created by mapMemory, or are unmapped");
  if (off % 4096 || len % 4096 || off > m->size || len > m->size - off)
    throw Napi::RangeError::New(env, "discardMemory: range must be page-aligned and inside the mapping");
  if (len == 0) return Napi::Boolean::New(env, true);
  uint8_t* at = static_cast<uint8_t*>(m->addr) + off;
  if (m->fd >= 0) {
    int r;
    do r = fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(off), off_t(len));
    while (r < 0 && errno == EINTR);
    if (r < 0) ThrowSys(env, errno, "fallocate");
    return Napi::Boolean::New(env, true);
  }
  if (m->file >= 0 && AnonRangeFits(m, off, off + len)) {
    // SAFETY: [at, at + len) lies inside this live mapping (checked above, under the lock that
    // unmapMemory takes), so MAP_FIXED replaces only our own guest RAM pages, never another mapping.
    void* r = mmap(at, len, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r != MAP_FAILED) {
      // The page cache may hold the file in large folios (up to 2 MiB), dropped only when the advice
      // covers a whole one: so the advice spans the merged anonymous range around this one, up to
      // 2 MiB either side. Advice: a failure is harmless.
      auto [s, e] = RecordAnonRange(m, off, off + len);
      constexpr size_t kFolio = size_t(2) << 20;
      size_t from = std::max(s, off > kFolio ? off - kFolio : 0), to = std::min(e, off + len + kFolio);
      posix_fadvise(m->file, off_t(from), off_t(to - from), POSIX_FADV_DONTNEED);
      return Napi::Boolean::New(env, true);
    }
    // ENOMEM: the kernel's map count ran out first; the range stays as it was (file-backed).
  }
  if (madvise(at, len, MADV_DONTNEED) < 0) ThrowSys(env, errno, "madvise");
  return Napi::Boolean::New(env, m->file < 0);
}

}  // namespace vmm
