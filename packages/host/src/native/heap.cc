// The C heap of a long-running VMM process (glibc malloc; mallopt(3), malloc_trim(3)). A VMM
// allocates a few large buffers once (a kernel image, an inflated initrd) and then runs for days:
// glibc's dynamic mmap threshold rises to the largest buffer freed, so after the first such
// buffer the next ones come from the brk heap, and freed heap memory below the top stays resident.
// tuneHeap fixes the threshold (large buffers are mmap()ed and unmapped on free) and caps the
// arenas (every thread that mallocs may otherwise get its own 64 MiB arena); trimHeap gives free
// heap pages back (malloc_trim(0) madvises free chunks in every arena, not only the top).
#include "host.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace vmm_host {

// tuneHeap(mmapThreshold, arenaMax) -> true when applied (glibc), false elsewhere. 0 leaves one as it is.
static Napi::Value TuneHeap(const Napi::CallbackInfo& info) {
  int threshold = Int(info[0]), arenas = Int(info[1]);
#if defined(__GLIBC__)
  bool ok = true;
  if (threshold > 0) ok = mallopt(M_MMAP_THRESHOLD, threshold) == 1 && ok;
  if (arenas > 0) ok = mallopt(M_ARENA_MAX, arenas) == 1 && ok;
  return Napi::Boolean::New(info.Env(), ok);
#else
  (void)threshold;
  (void)arenas;
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// trimHeap() -> true when memory was given back to the system.
static Napi::Value TrimHeap(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

void InitHeap(Napi::Env env, Napi::Object exports) {
  exports.Set("tuneHeap", Napi::Function::New(env, TuneHeap));
  exports.Set("trimHeap", Napi::Function::New(env, TrimHeap));
}

}  // namespace vmm_host
