// The one native module of the project: /dev/kvm, guest memory mappings, vCPU threads, eventfds.
//
// Policy lives in TypeScript (src/*.ts); this file only issues syscalls, keeps errno, and moves
// vCPU exits between the vCPU threads and the JavaScript thread as fast as it can.
//
// Threads: every vCPU is created (KVM_CREATE_VCPU) and run (KVM_RUN) on its own pthread, named
// after the vCPU, because KVM wants vCPU ioctls from the creating thread (Documentation/virt/kvm/
// api.rst, "General description"). Register access requested by JavaScript is shipped to that
// thread as a command while the vCPU is stopped or waiting on an exit.
//
// The exit round trip (the hot path of every emulated device):
//   vCPU thread: KVM_RUN returns -> exitPending = 1 -> spin, then futex-wait on its inbox
//   JS thread:   Vm.poll() sees exitPending (spinning briefly when it has just handled an exit),
//                the TypeScript dispatcher reads/writes struct kvm_run in place (it is an external
//                ArrayBuffer over the vCPU's mmap), Vm.complete() bumps the inbox
//   vCPU thread: sees the inbox change, re-enters KVM_RUN
// When the JS thread is idle it "arms" a thread-safe function, and the next exit wakes the event
// loop through it instead; both sides fall back to sleeping, so nobody spins for long.

#include <napi.h>

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "flex.h"
#include "sys.h"

namespace vmm {

// ---------------------------------------------------------------------------------------------
// helpers

static int Int(const Napi::Value& v) { return v.As<Napi::Number>().Int32Value(); }
static uint32_t U32(const Napi::Value& v) { return v.As<Napi::Number>().Uint32Value(); }

static uint64_t U64(const Napi::Value& v) {
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  return uint64_t(v.As<Napi::Number>().Int64Value());
}

static Napi::BigInt Big(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }

static uint64_t GetU64(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsUndefined() ? 0 : U64(v);
}
static uint32_t GetU32(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined()) return 0;
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  if (v.IsBigInt()) return uint32_t(U64(v));
  return v.As<Napi::Number>().Uint32Value();
}

// ioctl() again while a signal interrupted it (the JS thread gets signals: profilers' SIGPROF,
// for one). Not for KVM_RUN, whose EINTR is how a kick arrives.
static int RetryIoctl(int fd, unsigned long req, unsigned long arg) {
  int r;
  do r = ioctl(fd, req, arg);
  while (r < 0 && errno == EINTR);
  return r;
}
template <typename T>
static int RetryIoctl(int fd, unsigned long req, T* arg) {
  return RetryIoctl(fd, req, reinterpret_cast<unsigned long>(arg));
}

// Runs an ioctl and throws a Node-style error carrying errno and the request's name.
#define IOCTL(env, fd, req, arg)                                   \
  ({                                                               \
    int _r = RetryIoctl((fd), (req), (arg));                       \
    if (_r < 0) ThrowSys((env), errno, "ioctl", #req);              \
    _r;                                                            \
  })

static constexpr int kKickSignalOffset = 6;  // SIGRTMIN + 6: unused by Node, libuv and glibc
static int KickSignal() { return SIGRTMIN + kKickSignalOffset; }

static void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};  // its only job is to make KVM_RUN return -EINTR
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the ioctl must be interrupted
    sigaction(KickSignal(), &sa, nullptr);
  });
}

// ---------------------------------------------------------------------------------------------
// /dev/kvm

static Napi::Value OpenSystem(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) ThrowSys(env, errno, "open");
  return Napi::Number::New(env, fd);
}

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = Int(info[0]);
  if (fd >= 0 && close(fd) < 0 && errno != EINTR) ThrowSys(info.Env(), errno, "close");
  return info.Env().Undefined();
}

static Napi::Value ApiVersion(const Napi::CallbackInfo& info) {
  // SAFETY: KVM_GET_API_VERSION takes no argument.
  return Napi::Number::New(info.Env(), IOCTL(info.Env(), Int(info[0]), KVM_GET_API_VERSION, 0));
}

static Napi::Value CheckExtension(const Napi::CallbackInfo& info) {
  // SAFETY: KVM_CHECK_EXTENSION takes the capability number by value (system or VM fd).
  return Napi::Number::New(info.Env(), IOCTL(info.Env(), Int(info[0]), KVM_CHECK_EXTENSION, Int(info[1])));
}

static Napi::Value VcpuMmapSize(const Napi::CallbackInfo& info) {
  // SAFETY: KVM_GET_VCPU_MMAP_SIZE takes no argument.
  return Napi::Number::New(info.Env(), IOCTL(info.Env(), Int(info[0]), KVM_GET_VCPU_MMAP_SIZE, 0));
}

static constexpr int kMaxCpuidEntries = 256;


static Napi::Array CpuidToJs(Napi::Env env, const kvm_cpuid_entry2* entries, int n) {
  Napi::Array out = Napi::Array::New(env, n);
  for (int i = 0; i < n; i++) {
    const kvm_cpuid_entry2& e = entries[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("function", e.function);
    o.Set("index", e.index);
    o.Set("flags", e.flags);
    o.Set("eax", e.eax);
    o.Set("ebx", e.ebx);
    o.Set("ecx", e.ecx);
    o.Set("edx", e.edx);
    out.Set(uint32_t(i), o);
  }
  return out;
}

static Napi::Value SupportedCpuid(const Napi::CallbackInfo& info) {
  std::vector<kvm_cpuid_entry2> e(kMaxCpuidEntries);
  int n = vmm_get_supported_cpuid(Int(info[0]), e.data(), kMaxCpuidEntries);
  if (n < 0) ThrowSys(info.Env(), -n, "ioctl", "KVM_GET_SUPPORTED_CPUID");
  return CpuidToJs(info.Env(), e.data(), n);
}

static Napi::Value MsrIndexList(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool feature = info[1].ToBoolean();
  std::vector<uint32_t> idx(4096);
  int n = vmm_msr_index_list(Int(info[0]), feature, idx.data(), uint32_t(idx.size()));
  if (n < 0) ThrowSys(env, -n, "ioctl", feature ? "KVM_GET_MSR_FEATURE_INDEX_LIST" : "KVM_GET_MSR_INDEX_LIST");
  Napi::Array out = Napi::Array::New(env, n);
  for (int i = 0; i < n; i++) out.Set(uint32_t(i), idx[i]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Guest memory: mappings the VMM owns, exposed to JS as external ArrayBuffers (no copies).

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
static void Release(Mapping* m) {
  if (m->released) return;
  mmap(m->addr, m->size, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m->fd >= 0) close(m->fd);
  m->fd = -1;
  m->released = true;
}

// mapMemory(size, memfdName | null, hugepages) -> { buffer, address, fd }
static Napi::Value MapMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t size = size_t(U64(info[0]));
  bool useMemfd = info[1].IsString();
  bool huge = info.Length() > 2 && info[2].ToBoolean();
  int fd = -1;
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
static Napi::Value UnmapMemory(const Napi::CallbackInfo& info) {
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

// discardMemory(buffer, offset, length): gives the pages of a guest RAM chunk back to the host
// (MADV_DONTNEED; they read as zero afterwards, or as the memfd's contents). The balloon uses it.
static Napi::Value DiscardMemory(const Napi::CallbackInfo& info) {
  Napi::ArrayBuffer buf = info[0].As<Napi::ArrayBuffer>();
  size_t off = size_t(U64(info[1])), len = size_t(U64(info[2]));
  if (off % 4096 || len % 4096 || off + len > buf.ByteLength() || off + len < off)
    throw Napi::RangeError::New(info.Env(), "discardMemory: range must be page-aligned and inside the buffer");
  // SAFETY: the range lies inside a live mapping made by mapMemory (checked above).
  if (madvise(static_cast<uint8_t*>(buf.Data()) + off, len, MADV_DONTNEED) < 0) ThrowSys(info.Env(), errno, "madvise");
  return info.Env().Undefined();
}

// deallocateFileRange(fd, offset, length, zeroOnly): fallocate(2) on a disk image. zeroOnly false:
// FALLOC_FL_PUNCH_HOLE | KEEP_SIZE (the blocks go back to the file system, the range reads as
// zeroes); true: FALLOC_FL_ZERO_RANGE | KEEP_SIZE (zeroes, blocks may stay allocated). Errors keep
// errno: EOPNOTSUPP where the file system has neither, so callers can fall back to writing zeroes.
static Napi::Value DeallocateFileRange(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
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

// openTap(name, { vnetHdr, multiQueue }) -> { fd, name }: opens /dev/net/tun as a TAP device,
// creating it when no interface has that name (Documentation/networking/tuntap.rst). With
// vnetHdr every packet carries a struct virtio_net_hdr (12 bytes, TUNSETVNETHDRSZ), so checksum
// and segmentation offloads can pass through. The fd is non-blocking.
static Napi::Value OpenTap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  Napi::Object o = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  bool vnetHdr = GetU32(o, "vnetHdr") != 0;
  if (name.size() >= IFNAMSIZ) throw Napi::RangeError::New(env, "openTap: interface name longer than 15 bytes");
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) ThrowSys(env, errno, "open");
  ifreq ifr{};
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0);
  // SAFETY: ifr initialised; on success the fd is attached to the interface.
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    ThrowSys(env, e, "ioctl", "TUNSETIFF");
  }
  if (vnetHdr) {
    int sz = 12;  // struct virtio_net_hdr_v1 / _mrg_rxbuf (virtio 1.2 §5.1.6)
    if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
      int e = errno;
      close(fd);
      ThrowSys(env, e, "ioctl", "TUNSETVNETHDRSZ");
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("name", Napi::String::New(env, ifr.ifr_name));
  return out;
}

// setTapOffload(fd, flags): TUNSETOFFLOAD with TUN_F_CSUM (1) | TUN_F_TSO4 (2) | TUN_F_TSO6 (4) |
// TUN_F_TSO_ECN (8) | TUN_F_UFO (16): what the guest negotiated, so the tap hands it such packets.
static Napi::Value SetTapOffload(const Napi::CallbackInfo& info) {
  // SAFETY: flags by value.
  IOCTL(info.Env(), Int(info[0]), TUNSETOFFLOAD, (unsigned long)U32(info[1]));
  return info.Env().Undefined();
}

// The bytes of a typed array (a view of guest memory, usually) as a pointer and length.
static iovec BytesOf(const Napi::Value& v) {
  Napi::TypedArray t = v.As<Napi::TypedArray>();
  return {static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset(), t.ByteLength()};
}

// A read/write result for JS: the byte count, or -1 when the fd would block. EAGAIN does not throw
// because for a packet device (tap) it is the normal end of a drain loop, not an error.
static Napi::Value IoResult(Napi::Env env, ssize_t n, const char* syscall) {
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, -1);
    ThrowSys(env, errno, syscall);
  }
  return Napi::Number::New(env, double(n));
}

// readFd(fd, view) -> bytes read straight into `view`, or -1 when nothing is waiting.
static Napi::Value ReadFd(const Napi::CallbackInfo& info) {
  iovec b = BytesOf(info[1]);
  return IoResult(info.Env(), read(Int(info[0]), b.iov_base, b.iov_len), "read");
}

// writevFd(fd, [views]) -> bytes written, or -1 when it would block: one packet from several guest
// buffers (a descriptor chain) without gathering it into one buffer first.
static Napi::Value WritevFd(const Napi::CallbackInfo& info) {
  Napi::Array a = info[1].As<Napi::Array>();
  uint32_t n = std::min<uint32_t>(a.Length(), 1024);
  std::vector<iovec> iov(n);
  for (uint32_t i = 0; i < n; i++) iov[i] = BytesOf(a.Get(i));
  return IoResult(info.Env(), writev(Int(info[0]), iov.data(), int(n)), "writev");
}

// ---------------------------------------------------------------------------------------------
// eventfds and fd watching on the event loop (ioeventfd / irqfd plumbing)

static Napi::Value EventFd(const Napi::CallbackInfo& info) {
  int fd = eventfd(info.Length() > 0 ? U32(info[0]) : 0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) ThrowSys(info.Env(), errno, "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

// eventfdRead(fd) -> bigint counter, or null when nothing was signalled (EAGAIN)
static Napi::Value EventFdRead(const Napi::CallbackInfo& info) {
  uint64_t v;
  ssize_t n = read(Int(info[0]), &v, sizeof v);
  if (n < 0) {
    if (errno == EAGAIN) return info.Env().Null();
    ThrowSys(info.Env(), errno, "read");
  }
  return Big(info.Env(), v);
}

static Napi::Value EventFdWrite(const Napi::CallbackInfo& info) {
  uint64_t v = info.Length() > 1 ? U64(info[1]) : 1;
  if (write(Int(info[0]), &v, sizeof v) < 0) ThrowSys(info.Env(), errno, "write");
  return info.Env().Undefined();
}

// A libuv poll handle that calls back into JS when an fd becomes readable. Used to service
// ioeventfds (queue notifications) on the event loop without any vCPU exit.
class FdWatch : public Napi::ObjectWrap<FdWatch> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "FdWatch", {InstanceMethod("close", &FdWatch::Close)});
  }
  FdWatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatch>(info) {
    Napi::Env env = info.Env();
    fd_ = Int(info[0]);
    cb_ = Napi::Persistent(info[1].As<Napi::Function>());
    uv_loop_t* loop;
    napi_get_uv_event_loop(env, &loop);
    handle_ = new uv_poll_t;
    handle_->data = this;
    int r = uv_poll_init(loop, handle_, fd_);
    if (r < 0) {
      delete handle_;
      handle_ = nullptr;
      ThrowSys(env, -r, "uv_poll_init");
    }
    env_ = env;
    uv_poll_start(handle_, UV_READABLE, [](uv_poll_t* h, int status, int) {
      auto* self = static_cast<FdWatch*>(h->data);
      Napi::HandleScope scope(self->env_);
      self->cb_.Call({Napi::Number::New(self->env_, status)});
    });
    if (info.Length() > 2 && !info[2].ToBoolean()) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
  }
  ~FdWatch() override { Stop(); }

 private:
  void Stop() {
    if (!handle_) return;
    uv_poll_stop(handle_);
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }
  int fd_;
  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference cb_;
  Napi::Env env_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// vCPUs

class Vm;

enum Msg : uint32_t { MSG_NONE = 0, MSG_RUN = 1, MSG_RESUME = 2, MSG_STOP = 3, MSG_CMD = 4 };
enum ExitKind : int32_t { EXIT_KVM = 0, EXIT_KICK = 1, EXIT_ERROR = 2, EXIT_QUIT = 3 };
enum VcpuState : uint32_t { ST_IDLE = 0, ST_RUNNING = 1, ST_EXITED = 2 };

static constexpr uint64_t kVcpuSpinNs = 100000;  // how long a vCPU waits hot for JS's answer

struct Vcpu {
  Vm* vm = nullptr;
  uint32_t id = 0;
  std::string name;
  int fd = -1;
  kvm_run* run = nullptr;
  size_t mmapSize = 0;
  Napi::Reference<Napi::ArrayBuffer> runBuffer;  // JS's view of *run, detached on dispose
  pthread_t thread{};
  bool joined = true;

  // JS -> vCPU: a sequence word the vCPU thread waits on, and the message it announces.
  std::atomic<uint32_t> inbox{0};
  std::atomic<uint32_t> inboxSleeping{0};
  std::atomic<uint32_t> msg{MSG_NONE};
  std::function<void()> cmd;
  uint32_t inboxSeen = 0;  // vCPU thread only

  // vCPU -> JS: command completion, creation, stop acknowledgement.
  std::atomic<uint32_t> outbox{0};
  std::atomic<uint32_t> outboxSleeping{0};

  // vCPU -> JS: an exit waiting for the dispatcher.
  std::atomic<uint32_t> exitPending{0};
  int32_t exitKind = 0;
  int32_t exitErrno = 0;

  std::atomic<bool> kickRequested{false};
  std::atomic<bool> quitRequested{false};
  int createErrno = 0;
  const char* createWhat = nullptr;

  uint32_t jsState = ST_IDLE;  // JS thread's view: who owns the vCPU now
};

class Vm : public Napi::ObjectWrap<Vm> {
 public:
  static Napi::Function Init(Napi::Env env);
  Vm(const Napi::CallbackInfo& info);
  ~Vm() override {
    if (!disposed_) napi_remove_env_cleanup_hook(Env(), CleanupHook, this);
    DisposeAll();
  }

  // Called on a vCPU thread after it posted an exit.
  void Notify() {
    if (jsSleeping_.exchange(0, std::memory_order_seq_cst)) wake_.NonBlockingCall(CallWake);
  }
  // Runs the JS wake function on the event loop. A call still queued while the environment shuts
  // down finds no JS to run: that is not an error. An exception from JS stays a JS exception.
  static void CallWake(Napi::Env env, Napi::Function fn) {
    if (env == nullptr || fn.IsEmpty()) return;
    try {
      fn.Call({});
    } catch (const Napi::Error& e) {
      if (!e.Value().IsEmpty()) e.ThrowAsJavaScriptException();
    }
  }
  int fd() const { return fd_; }
  static void CleanupHook(void* self) { static_cast<Vm*>(self)->DisposeAll(); }

 private:
  Vcpu* Get(const Napi::CallbackInfo& info, bool mustBeStopped = false);
  void RunOnVcpu(Napi::Env env, Vcpu* v, std::function<void()> fn);
  void Post(Vcpu* v, Msg m) {
    v->msg.store(m, std::memory_order_relaxed);
    PostChange(v->inbox, v->inboxSleeping);
  }
  void WaitOutbox(Vcpu* v, uint32_t seen) {
    WaitChange(v->outbox, seen, v->outboxSleeping, 50000);
  }
  void DisposeAll();
  void StopThread(Vcpu* v);

  // VM ioctls
  Napi::Value SetUserMemoryRegion(const Napi::CallbackInfo& info);
  Napi::Value CreateIrqchip(const Napi::CallbackInfo& info);
  Napi::Value CreatePit2(const Napi::CallbackInfo& info);
  Napi::Value SetTssAddr(const Napi::CallbackInfo& info);
  Napi::Value SetIdentityMapAddr(const Napi::CallbackInfo& info);
  Napi::Value IrqLine(const Napi::CallbackInfo& info);
  Napi::Value GetClock(const Napi::CallbackInfo& info);
  Napi::Value SetClock(const Napi::CallbackInfo& info);
  Napi::Value Ioeventfd(const Napi::CallbackInfo& info);
  Napi::Value Irqfd(const Napi::CallbackInfo& info);
  Napi::Value SetGsiRouting(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value EnableCap(const Napi::CallbackInfo& info);

  // vCPU management and the exit path
  Napi::Value CreateVcpu(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Poll(const Napi::CallbackInfo& info);
  Napi::Value ResumeAndPoll(const Napi::CallbackInfo& info);
  int32_t PollFor(uint64_t spinNs);
  Napi::Value Complete(const Napi::CallbackInfo& info);
  Napi::Value Arm(const Napi::CallbackInfo& info);
  Napi::Value Kick(const Napi::CallbackInfo& info);
  Napi::Value ExitErrno(const Napi::CallbackInfo& info);
  Napi::Value KeepAlive(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  // vCPU state (executed on the vCPU's thread)
  Napi::Value GetRegs(const Napi::CallbackInfo& info);
  Napi::Value SetRegs(const Napi::CallbackInfo& info);
  Napi::Value GetSregs(const Napi::CallbackInfo& info);
  Napi::Value SetSregs(const Napi::CallbackInfo& info);
  Napi::Value GetFpu(const Napi::CallbackInfo& info);
  Napi::Value SetFpu(const Napi::CallbackInfo& info);
  Napi::Value GetMsrs(const Napi::CallbackInfo& info);
  Napi::Value SetMsrs(const Napi::CallbackInfo& info);
  Napi::Value SetCpuid(const Napi::CallbackInfo& info);
  Napi::Value GetCpuid(const Napi::CallbackInfo& info);
  Napi::Value GetLapic(const Napi::CallbackInfo& info);
  Napi::Value SetLapic(const Napi::CallbackInfo& info);
  Napi::Value GetMpState(const Napi::CallbackInfo& info);
  Napi::Value SetMpState(const Napi::CallbackInfo& info);
  Napi::Value GetVcpuEvents(const Napi::CallbackInfo& info);
  Napi::Value SetVcpuEvents(const Napi::CallbackInfo& info);
  Napi::Value GetTscKhz(const Napi::CallbackInfo& info);

  int fd_ = -1;
  size_t mmapSize_ = 0;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  uint32_t lastPolled_ = 0;
  std::atomic<uint32_t> jsSleeping_{0};
  Napi::ThreadSafeFunction wake_;
  bool keepAlive_ = false;
  bool disposed_ = false;
};

static void* VcpuThread(void* arg);

// Runs on the vCPU thread until a stop or quit; returns false on quit.
static bool RunLoop(Vcpu* v) {
  for (;;) {
    if (v->quitRequested.load(std::memory_order_acquire)) return false;
    // SAFETY: v->fd is this thread's vCPU; v->run is its mapped kvm_run.
    int r = ioctl(v->fd, KVM_RUN, 0);
    int err = errno;
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
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, KickSignal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);

  // SAFETY: KVM_CREATE_VCPU takes the vCPU id by value; the fd is owned by this Vcpu from here.
  v->fd = RetryIoctl(v->vm->fd(), KVM_CREATE_VCPU, (unsigned long)v->id);
  if (v->fd < 0) {
    v->createErrno = errno;
    v->createWhat = "KVM_CREATE_VCPU";
  } else {
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

Vm::Vm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Vm>(info) {
  Napi::Env env = info.Env();
  int sysFd = Int(info[0]);
  // SAFETY: KVM_CREATE_VM with machine type 0 (default).
  fd_ = RetryIoctl(sysFd, KVM_CREATE_VM, 0ul);
  if (fd_ < 0) ThrowSys(env, errno, "ioctl", "KVM_CREATE_VM");
  fcntl(fd_, F_SETFD, FD_CLOEXEC);
  int sz = RetryIoctl(sysFd, KVM_GET_VCPU_MMAP_SIZE, 0ul);
  if (sz < 0) {
    int e = errno;
    close(fd_);
    ThrowSys(env, e, "ioctl", "KVM_GET_VCPU_MMAP_SIZE");
  }
  mmapSize_ = size_t(sz);
  InstallKickHandler();
  // The wake callback runs the JS exit pump when the JS thread was idle.
  wake_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "vmm-vcpu-exit", 0, 1);
  wake_.Unref(env);
  // A process that exits with vCPUs still running must not hang on them: stop and join them.
  napi_add_env_cleanup_hook(env, CleanupHook, this);
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

// ---- VM ioctls ------------------------------------------------------------------------------

Napi::Value Vm::CheckExtension(const Napi::CallbackInfo& info) {
  // SAFETY: capability number by value.
  return Napi::Number::New(info.Env(), IOCTL(info.Env(), fd_, KVM_CHECK_EXTENSION, Int(info[0])));
}

Napi::Value Vm::EnableCap(const Napi::CallbackInfo& info) {
  kvm_enable_cap cap{};
  cap.cap = U32(info[0]);
  Napi::Array args = info.Length() > 1 && info[1].IsArray() ? info[1].As<Napi::Array>() : Napi::Array::New(info.Env());
  for (uint32_t i = 0; i < args.Length() && i < 4; i++) cap.args[i] = U64(args.Get(i));
  // SAFETY: cap is a fully initialised kvm_enable_cap.
  IOCTL(info.Env(), fd_, KVM_ENABLE_CAP, &cap);
  return info.Env().Undefined();
}

// setUserMemoryRegion(slot, flags, guestAddress, size, hostAddress); size 0 deletes the slot.
Napi::Value Vm::SetUserMemoryRegion(const Napi::CallbackInfo& info) {
  kvm_userspace_memory_region r{};
  r.slot = U32(info[0]);
  r.flags = U32(info[1]);
  r.guest_phys_addr = U64(info[2]);
  r.memory_size = U64(info[3]);
  r.userspace_addr = U64(info[4]);
  // SAFETY: userspace_addr comes from mapMemory (TypeScript checks the range is inside a live
  // mapping); KVM validates alignment and overlaps and reports EINVAL/EEXIST.
  IOCTL(info.Env(), fd_, KVM_SET_USER_MEMORY_REGION, &r);
  return info.Env().Undefined();
}

Napi::Value Vm::CreateIrqchip(const Napi::CallbackInfo& info) {
  // SAFETY: no argument; creates PIC + IOAPIC + per-vCPU LAPICs (must precede vCPU creation).
  IOCTL(info.Env(), fd_, KVM_CREATE_IRQCHIP, 0);
  return info.Env().Undefined();
}

Napi::Value Vm::CreatePit2(const Napi::CallbackInfo& info) {
  kvm_pit_config cfg{};
  cfg.flags = info.Length() > 0 ? U32(info[0]) : 0;
  // SAFETY: cfg initialised; requires the in-kernel irqchip.
  IOCTL(info.Env(), fd_, KVM_CREATE_PIT2, &cfg);
  return info.Env().Undefined();
}

Napi::Value Vm::SetTssAddr(const Napi::CallbackInfo& info) {
  // SAFETY: the address by value (three pages below 4 GiB that must not overlap guest RAM).
  IOCTL(info.Env(), fd_, KVM_SET_TSS_ADDR, (unsigned long)U64(info[0]));
  return info.Env().Undefined();
}

Napi::Value Vm::SetIdentityMapAddr(const Napi::CallbackInfo& info) {
  uint64_t a = U64(info[0]);
  // SAFETY: pointer to a u64 holding the address of one page.
  IOCTL(info.Env(), fd_, KVM_SET_IDENTITY_MAP_ADDR, &a);
  return info.Env().Undefined();
}

Napi::Value Vm::IrqLine(const Napi::CallbackInfo& info) {
  kvm_irq_level l{};
  l.irq = U32(info[0]);
  l.level = U32(info[1]);
  // SAFETY: l initialised; needs the in-kernel irqchip.
  IOCTL(info.Env(), fd_, KVM_IRQ_LINE, &l);
  return info.Env().Undefined();
}

Napi::Value Vm::GetClock(const Napi::CallbackInfo& info) {
  kvm_clock_data c{};
  // SAFETY: c is written by the kernel.
  IOCTL(info.Env(), fd_, KVM_GET_CLOCK, &c);
  return Big(info.Env(), c.clock);
}

Napi::Value Vm::SetClock(const Napi::CallbackInfo& info) {
  kvm_clock_data c{};
  c.clock = U64(info[0]);
  // SAFETY: c initialised (flags 0).
  IOCTL(info.Env(), fd_, KVM_SET_CLOCK, &c);
  return info.Env().Undefined();
}

// ioeventfd({ fd, address, length, datamatch?, pio, deassign })
Napi::Value Vm::Ioeventfd(const Napi::CallbackInfo& info) {
  Napi::Object o = info[0].As<Napi::Object>();
  kvm_ioeventfd e{};
  e.fd = Int(o.Get("fd"));
  e.addr = GetU64(o, "address");
  e.len = GetU32(o, "length");
  Napi::Value dm = o.Get("datamatch");
  if (!dm.IsUndefined() && !dm.IsNull()) {
    e.datamatch = U64(dm);
    e.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
  }
  if (GetU32(o, "pio")) e.flags |= KVM_IOEVENTFD_FLAG_PIO;
  if (GetU32(o, "deassign")) e.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  // SAFETY: e initialised; the eventfd stays owned by the caller.
  IOCTL(info.Env(), fd_, KVM_IOEVENTFD, &e);
  return info.Env().Undefined();
}

// irqfd({ fd, gsi, resampleFd?, deassign })
Napi::Value Vm::Irqfd(const Napi::CallbackInfo& info) {
  Napi::Object o = info[0].As<Napi::Object>();
  kvm_irqfd f{};
  f.fd = GetU32(o, "fd");
  f.gsi = GetU32(o, "gsi");
  Napi::Value rs = o.Get("resampleFd");
  if (!rs.IsUndefined() && !rs.IsNull()) {
    f.resamplefd = U32(rs);
    f.flags |= KVM_IRQFD_FLAG_RESAMPLE;
  }
  if (GetU32(o, "deassign")) f.flags |= KVM_IRQFD_FLAG_DEASSIGN;
  // SAFETY: f initialised.
  IOCTL(info.Env(), fd_, KVM_IRQFD, &f);
  return info.Env().Undefined();
}

// setGsiRouting([{ gsi, type: 'irqchip', irqchip, pin } | { gsi, type: 'msi', addressLo, addressHi, data, devid? }])
Napi::Value Vm::SetGsiRouting(const Napi::CallbackInfo& info) {
  Napi::Array a = info[0].As<Napi::Array>();
  uint32_t n = a.Length();
  std::vector<kvm_irq_routing_entry> entries(n);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Object o = a.Get(i).As<Napi::Object>();
    kvm_irq_routing_entry& e = entries[i];
    memset(&e, 0, sizeof e);
    e.gsi = GetU32(o, "gsi");
    std::string type = o.Get("type").As<Napi::String>();
    if (type == "irqchip") {
      e.type = KVM_IRQ_ROUTING_IRQCHIP;
      e.u.irqchip.irqchip = GetU32(o, "irqchip");
      e.u.irqchip.pin = GetU32(o, "pin");
    } else if (type == "msi") {
      e.type = KVM_IRQ_ROUTING_MSI;
      e.u.msi.address_lo = GetU32(o, "addressLo");
      e.u.msi.address_hi = GetU32(o, "addressHi");
      e.u.msi.data = GetU32(o, "data");
    } else {
      throw Napi::TypeError::New(info.Env(), "setGsiRouting: entry " + std::to_string(i) + " has unknown type '" + type + "'");
    }
  }
  int r = vmm_set_gsi_routing(fd_, entries.data(), n);
  if (r < 0) ThrowSys(info.Env(), -r, "ioctl", "KVM_SET_GSI_ROUTING");
  return info.Env().Undefined();
}

// ---- vCPU state -----------------------------------------------------------------------------

// Runs `ioctl(vcpu, req, arg)` on the vCPU thread and throws with errno on failure.
#define VCPU_IOCTL(env, v, req, arg)                               \
  do {                                                             \
    int _err = 0;                                                  \
    RunOnVcpu(env, v, [&] {                                        \
      if (RetryIoctl(v->fd, req, arg) < 0) _err = errno;           \
    });                                                            \
    if (_err) ThrowSys(env, _err, "ioctl", #req);                  \
  } while (0)

#define REGS(X) X(rax) X(rbx) X(rcx) X(rdx) X(rsi) X(rdi) X(rsp) X(rbp) X(r8) X(r9) X(r10) X(r11) X(r12) X(r13) X(r14) X(r15) X(rip) X(rflags)

Napi::Value Vm::GetRegs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  kvm_regs r{};
  VCPU_IOCTL(env, v, KVM_GET_REGS, &r);
  Napi::Object o = Napi::Object::New(env);
#define X(n) o.Set(#n, Big(env, r.n));
  REGS(X)
#undef X
  return o;
}

Napi::Value Vm::SetRegs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  Napi::Object o = info[1].As<Napi::Object>();
  kvm_regs r{};
#define X(n) r.n = GetU64(o, #n);
  REGS(X)
#undef X
  VCPU_IOCTL(env, v, KVM_SET_REGS, &r);
  return env.Undefined();
}

static Napi::Object SegToJs(Napi::Env env, const kvm_segment& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("base", Big(env, s.base));
  o.Set("limit", s.limit);
  o.Set("selector", s.selector);
  o.Set("type", s.type);
  o.Set("present", s.present);
  o.Set("dpl", s.dpl);
  o.Set("db", s.db);
  o.Set("s", s.s);
  o.Set("l", s.l);
  o.Set("g", s.g);
  o.Set("avl", s.avl);
  o.Set("unusable", s.unusable);
  return o;
}

static void SegFromJs(const Napi::Object& o, kvm_segment& s) {
  s.base = GetU64(o, "base");
  s.limit = GetU32(o, "limit");
  s.selector = uint16_t(GetU32(o, "selector"));
  s.type = uint8_t(GetU32(o, "type"));
  s.present = uint8_t(GetU32(o, "present"));
  s.dpl = uint8_t(GetU32(o, "dpl"));
  s.db = uint8_t(GetU32(o, "db"));
  s.s = uint8_t(GetU32(o, "s"));
  s.l = uint8_t(GetU32(o, "l"));
  s.g = uint8_t(GetU32(o, "g"));
  s.avl = uint8_t(GetU32(o, "avl"));
  s.unusable = uint8_t(GetU32(o, "unusable"));
}

#define SEGS(X) X(cs) X(ds) X(es) X(fs) X(gs) X(ss) X(tr) X(ldt)
#define CRS(X) X(cr0) X(cr2) X(cr3) X(cr4) X(cr8) X(efer) X(apic_base)

Napi::Value Vm::GetSregs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  kvm_sregs s{};
  VCPU_IOCTL(env, v, KVM_GET_SREGS, &s);
  Napi::Object o = Napi::Object::New(env);
#define X(n) o.Set(#n, SegToJs(env, s.n));
  SEGS(X)
#undef X
#define X(n) o.Set(#n, Big(env, s.n));
  CRS(X)
#undef X
  for (const char* t : {"gdt", "idt"}) {
    const kvm_dtable& d = t[0] == 'g' ? s.gdt : s.idt;
    Napi::Object dt = Napi::Object::New(env);
    dt.Set("base", Big(env, d.base));
    dt.Set("limit", d.limit);
    o.Set(t, dt);
  }
  Napi::Array bm = Napi::Array::New(env, 4);
  for (uint32_t i = 0; i < 4; i++) bm.Set(i, Big(env, s.interrupt_bitmap[i]));
  o.Set("interrupt_bitmap", bm);
  return o;
}

Napi::Value Vm::SetSregs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  Napi::Object o = info[1].As<Napi::Object>();
  kvm_sregs s{};
#define X(n) SegFromJs(o.Get(#n).As<Napi::Object>(), s.n);
  SEGS(X)
#undef X
#define X(n) s.n = GetU64(o, #n);
  CRS(X)
#undef X
  Napi::Object g = o.Get("gdt").As<Napi::Object>(), i = o.Get("idt").As<Napi::Object>();
  s.gdt.base = GetU64(g, "base");
  s.gdt.limit = uint16_t(GetU32(g, "limit"));
  s.idt.base = GetU64(i, "base");
  s.idt.limit = uint16_t(GetU32(i, "limit"));
  Napi::Value bmv = o.Get("interrupt_bitmap");
  if (bmv.IsArray()) {
    Napi::Array bm = bmv.As<Napi::Array>();
    for (uint32_t k = 0; k < 4 && k < bm.Length(); k++) s.interrupt_bitmap[k] = U64(bm.Get(k));
  }
  VCPU_IOCTL(env, v, KVM_SET_SREGS, &s);
  return env.Undefined();
}

Napi::Value Vm::GetFpu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  kvm_fpu f{};
  VCPU_IOCTL(env, v, KVM_GET_FPU, &f);
  Napi::Object o = Napi::Object::New(env);
  o.Set("fpr", Napi::Buffer<uint8_t>::Copy(env, &f.fpr[0][0], sizeof f.fpr));
  o.Set("fcw", f.fcw);
  o.Set("fsw", f.fsw);
  o.Set("ftwx", f.ftwx);
  o.Set("lastOpcode", f.last_opcode);
  o.Set("lastIp", Big(env, f.last_ip));
  o.Set("lastDp", Big(env, f.last_dp));
  o.Set("xmm", Napi::Buffer<uint8_t>::Copy(env, &f.xmm[0][0], sizeof f.xmm));
  o.Set("mxcsr", f.mxcsr);
  return o;
}

Napi::Value Vm::SetFpu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  Napi::Object o = info[1].As<Napi::Object>();
  kvm_fpu f{};
  f.fcw = uint16_t(GetU32(o, "fcw"));
  f.fsw = uint16_t(GetU32(o, "fsw"));
  f.ftwx = uint8_t(GetU32(o, "ftwx"));
  f.last_opcode = uint16_t(GetU32(o, "lastOpcode"));
  f.last_ip = GetU64(o, "lastIp");
  f.last_dp = GetU64(o, "lastDp");
  f.mxcsr = GetU32(o, "mxcsr");
  for (const char* k : {"fpr", "xmm"}) {
    Napi::Value b = o.Get(k);
    if (!b.IsTypedArray()) continue;
    Napi::Uint8Array a = b.As<Napi::Uint8Array>();
    uint8_t* dst = k[0] == 'f' ? &f.fpr[0][0] : &f.xmm[0][0];
    size_t cap = k[0] == 'f' ? sizeof f.fpr : sizeof f.xmm;
    memcpy(dst, a.Data(), std::min(cap, a.ByteLength()));
  }
  VCPU_IOCTL(env, v, KVM_SET_FPU, &f);
  return env.Undefined();
}


// getMsrs(id, [index...]) -> [bigint...]; throws when KVM read fewer than asked (naming the first).
Napi::Value Vm::GetMsrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  Napi::Array idx = info[1].As<Napi::Array>();
  uint32_t n = idx.Length();
  std::vector<kvm_msr_entry> e(n);
  for (uint32_t i = 0; i < n; i++) {
    memset(&e[i], 0, sizeof e[i]);
    e[i].index = U32(idx.Get(i));
  }
  int got = 0;
  RunOnVcpu(env, v, [&] { got = vmm_get_msrs(v->fd, e.data(), n); });
  if (got < 0) ThrowSys(env, -got, "ioctl", "KVM_GET_MSRS");
  if (uint32_t(got) < n) {
    char m[96];
    snprintf(m, sizeof m, "KVM_GET_MSRS: MSR 0x%x is not supported", e[got].index);
    Napi::Error err = Napi::Error::New(env, m);
    err.Set("code", Napi::String::New(env, "EINVAL"));
    err.Set("ioctl", Napi::String::New(env, "KVM_GET_MSRS"));
    throw err;
  }
  Napi::Array out = Napi::Array::New(env, n);
  for (uint32_t i = 0; i < n; i++) out.Set(i, Big(env, e[i].data));
  return out;
}

// setMsrs(id, [{ index, data }]); throws when KVM accepted fewer than given (naming the first).
Napi::Value Vm::SetMsrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  Napi::Array a = info[1].As<Napi::Array>();
  uint32_t n = a.Length();
  std::vector<kvm_msr_entry> e(n);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Object o = a.Get(i).As<Napi::Object>();
    memset(&e[i], 0, sizeof e[i]);
    e[i].index = GetU32(o, "index");
    e[i].data = GetU64(o, "data");
  }
  int got = 0;
  RunOnVcpu(env, v, [&] { got = vmm_set_msrs(v->fd, e.data(), n); });
  if (got < 0) ThrowSys(env, -got, "ioctl", "KVM_SET_MSRS");
  if (uint32_t(got) < n) {
    char m[96];
    snprintf(m, sizeof m, "KVM_SET_MSRS: MSR 0x%x was refused", e[got].index);
    Napi::Error err = Napi::Error::New(env, m);
    err.Set("code", Napi::String::New(env, "EINVAL"));
    err.Set("ioctl", Napi::String::New(env, "KVM_SET_MSRS"));
    throw err;
  }
  return env.Undefined();
}

Napi::Value Vm::SetCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  Napi::Array a = info[1].As<Napi::Array>();
  uint32_t n = std::min<uint32_t>(a.Length(), kMaxCpuidEntries);
  std::vector<kvm_cpuid_entry2> entries(n);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Object o = a.Get(i).As<Napi::Object>();
    kvm_cpuid_entry2& e = entries[i];
    memset(&e, 0, sizeof e);
    e.function = GetU32(o, "function");
    e.index = GetU32(o, "index");
    e.flags = GetU32(o, "flags");
    e.eax = GetU32(o, "eax");
    e.ebx = GetU32(o, "ebx");
    e.ecx = GetU32(o, "ecx");
    e.edx = GetU32(o, "edx");
  }
  int r = 0;
  RunOnVcpu(env, v, [&] { r = vmm_set_vcpu_cpuid(v->fd, entries.data(), n); });
  if (r < 0) ThrowSys(env, -r, "ioctl", "KVM_SET_CPUID2");
  return env.Undefined();
}

Napi::Value Vm::GetCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  std::vector<kvm_cpuid_entry2> e(kMaxCpuidEntries);
  int n = 0;
  RunOnVcpu(env, v, [&] { n = vmm_get_vcpu_cpuid(v->fd, e.data(), kMaxCpuidEntries); });
  if (n < 0) ThrowSys(env, -n, "ioctl", "KVM_GET_CPUID2");
  return CpuidToJs(env, e.data(), n);
}

Napi::Value Vm::GetLapic(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  kvm_lapic_state s{};
  VCPU_IOCTL(env, v, KVM_GET_LAPIC, &s);
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(s.regs), sizeof s.regs);
}

Napi::Value Vm::SetLapic(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  Napi::Uint8Array a = info[1].As<Napi::Uint8Array>();
  kvm_lapic_state s{};
  if (a.ByteLength() != sizeof s.regs) throw Napi::RangeError::New(env, "setLapic: expected 1024 bytes");
  memcpy(s.regs, a.Data(), sizeof s.regs);
  VCPU_IOCTL(env, v, KVM_SET_LAPIC, &s);
  return env.Undefined();
}

Napi::Value Vm::GetMpState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  kvm_mp_state s{};
  VCPU_IOCTL(env, v, KVM_GET_MP_STATE, &s);
  return Napi::Number::New(env, s.mp_state);
}

Napi::Value Vm::SetMpState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  kvm_mp_state s{};
  s.mp_state = U32(info[1]);
  VCPU_IOCTL(env, v, KVM_SET_MP_STATE, &s);
  return env.Undefined();
}

Napi::Value Vm::GetVcpuEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  kvm_vcpu_events e{};
  VCPU_IOCTL(env, v, KVM_GET_VCPU_EVENTS, &e);
  Napi::Object o = Napi::Object::New(env);
  Napi::Object ex = Napi::Object::New(env);
  ex.Set("injected", e.exception.injected);
  ex.Set("nr", e.exception.nr);
  ex.Set("hasErrorCode", e.exception.has_error_code);
  ex.Set("pending", e.exception.pending);
  ex.Set("errorCode", e.exception.error_code);
  o.Set("exception", ex);
  Napi::Object irq = Napi::Object::New(env);
  irq.Set("injected", e.interrupt.injected);
  irq.Set("nr", e.interrupt.nr);
  irq.Set("soft", e.interrupt.soft);
  irq.Set("shadow", e.interrupt.shadow);
  o.Set("interrupt", irq);
  Napi::Object nmi = Napi::Object::New(env);
  nmi.Set("injected", e.nmi.injected);
  nmi.Set("pending", e.nmi.pending);
  nmi.Set("masked", e.nmi.masked);
  o.Set("nmi", nmi);
  o.Set("sipiVector", e.sipi_vector);
  o.Set("flags", e.flags);
  return o;
}

// setVcpuEvents(id, { exception?, interrupt?, nmi?, sipiVector? }): only the parts given are
// set (KVM_VCPUEVENT_VALID_* flags), so injecting an exception leaves the rest untouched.
Napi::Value Vm::SetVcpuEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  Napi::Object o = info[1].As<Napi::Object>();
  kvm_vcpu_events e{};
  VCPU_IOCTL(env, v, KVM_GET_VCPU_EVENTS, &e);
  e.flags = 0;
  Napi::Value ex = o.Get("exception");
  if (ex.IsObject()) {
    Napi::Object x = ex.As<Napi::Object>();
    e.exception.injected = uint8_t(GetU32(x, "injected"));
    e.exception.nr = uint8_t(GetU32(x, "nr"));
    e.exception.has_error_code = uint8_t(GetU32(x, "hasErrorCode"));
    e.exception.pending = uint8_t(GetU32(x, "pending"));
    e.exception.error_code = GetU32(x, "errorCode");
  }
  Napi::Value irq = o.Get("interrupt");
  if (irq.IsObject()) {
    Napi::Object x = irq.As<Napi::Object>();
    e.interrupt.injected = uint8_t(GetU32(x, "injected"));
    e.interrupt.nr = uint8_t(GetU32(x, "nr"));
    e.interrupt.soft = uint8_t(GetU32(x, "soft"));
    e.interrupt.shadow = uint8_t(GetU32(x, "shadow"));
    e.flags |= KVM_VCPUEVENT_VALID_SHADOW;
  }
  Napi::Value nmi = o.Get("nmi");
  if (nmi.IsObject()) {
    Napi::Object x = nmi.As<Napi::Object>();
    e.nmi.injected = uint8_t(GetU32(x, "injected"));
    e.nmi.pending = uint8_t(GetU32(x, "pending"));
    e.nmi.masked = uint8_t(GetU32(x, "masked"));
    e.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING;
  }
  Napi::Value sipi = o.Get("sipiVector");
  if (!sipi.IsUndefined()) {
    e.sipi_vector = U32(sipi);
    e.flags |= KVM_VCPUEVENT_VALID_SIPI_VECTOR;
  }
  VCPU_IOCTL(env, v, KVM_SET_VCPU_EVENTS, &e);
  return env.Undefined();
}

Napi::Value Vm::GetTscKhz(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = Get(info, true);
  int khz = -1, err = 0;
  RunOnVcpu(env, v, [&] {
    khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
    if (khz < 0) err = errno;
  });
  if (khz < 0) ThrowSys(env, err, "ioctl", "KVM_GET_TSC_KHZ");
  return Napi::Number::New(env, khz);
}

Napi::Function Vm::Init(Napi::Env env) {
  return DefineClass(env, "Vm",
                     {
                         InstanceMethod("setUserMemoryRegion", &Vm::SetUserMemoryRegion),
                         InstanceMethod("createIrqchip", &Vm::CreateIrqchip),
                         InstanceMethod("createPit2", &Vm::CreatePit2),
                         InstanceMethod("setTssAddr", &Vm::SetTssAddr),
                         InstanceMethod("setIdentityMapAddr", &Vm::SetIdentityMapAddr),
                         InstanceMethod("irqLine", &Vm::IrqLine),
                         InstanceMethod("getClock", &Vm::GetClock),
                         InstanceMethod("setClock", &Vm::SetClock),
                         InstanceMethod("ioeventfd", &Vm::Ioeventfd),
                         InstanceMethod("irqfd", &Vm::Irqfd),
                         InstanceMethod("setGsiRouting", &Vm::SetGsiRouting),
                         InstanceMethod("checkExtension", &Vm::CheckExtension),
                         InstanceMethod("enableCap", &Vm::EnableCap),
                         InstanceMethod("createVcpu", &Vm::CreateVcpu),
                         InstanceMethod("start", &Vm::Start),
                         InstanceMethod("poll", &Vm::Poll),
                         InstanceMethod("resumeAndPoll", &Vm::ResumeAndPoll),
                         InstanceMethod("complete", &Vm::Complete),
                         InstanceMethod("arm", &Vm::Arm),
                         InstanceMethod("kick", &Vm::Kick),
                         InstanceMethod("exitErrno", &Vm::ExitErrno),
                         InstanceMethod("keepAlive", &Vm::KeepAlive),
                         InstanceMethod("dispose", &Vm::Dispose),
                         InstanceMethod("getRegs", &Vm::GetRegs),
                         InstanceMethod("setRegs", &Vm::SetRegs),
                         InstanceMethod("getSregs", &Vm::GetSregs),
                         InstanceMethod("setSregs", &Vm::SetSregs),
                         InstanceMethod("getFpu", &Vm::GetFpu),
                         InstanceMethod("setFpu", &Vm::SetFpu),
                         InstanceMethod("getMsrs", &Vm::GetMsrs),
                         InstanceMethod("setMsrs", &Vm::SetMsrs),
                         InstanceMethod("setCpuid", &Vm::SetCpuid),
                         InstanceMethod("getCpuid", &Vm::GetCpuid),
                         InstanceMethod("getLapic", &Vm::GetLapic),
                         InstanceMethod("setLapic", &Vm::SetLapic),
                         InstanceMethod("getMpState", &Vm::GetMpState),
                         InstanceMethod("setMpState", &Vm::SetMpState),
                         InstanceMethod("getVcpuEvents", &Vm::GetVcpuEvents),
                         InstanceMethod("setVcpuEvents", &Vm::SetVcpuEvents),
                         InstanceMethod("getTscKhz", &Vm::GetTscKhz),
                     });
}

// ---------------------------------------------------------------------------------------------

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("openSystem", Napi::Function::New(env, OpenSystem));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("apiVersion", Napi::Function::New(env, ApiVersion));
  exports.Set("checkExtension", Napi::Function::New(env, CheckExtension));
  exports.Set("vcpuMmapSize", Napi::Function::New(env, VcpuMmapSize));
  exports.Set("supportedCpuid", Napi::Function::New(env, SupportedCpuid));
  exports.Set("msrIndexList", Napi::Function::New(env, MsrIndexList));
  exports.Set("mapMemory", Napi::Function::New(env, MapMemory));
  exports.Set("unmapMemory", Napi::Function::New(env, UnmapMemory));
  exports.Set("eventfd", Napi::Function::New(env, EventFd));
  exports.Set("eventfdRead", Napi::Function::New(env, EventFdRead));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventFdWrite));
  exports.Set("FdWatch", FdWatch::Init(env));
  exports.Set("discardMemory", Napi::Function::New(env, DiscardMemory));
  exports.Set("deallocateFileRange", Napi::Function::New(env, DeallocateFileRange));
  exports.Set("openTap", Napi::Function::New(env, OpenTap));
  exports.Set("setTapOffload", Napi::Function::New(env, SetTapOffload));
  exports.Set("readFd", Napi::Function::New(env, ReadFd));
  exports.Set("writevFd", Napi::Function::New(env, WritevFd));
  exports.Set("Vm", Vm::Init(env));
  return exports;
}

}  // namespace vmm

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return vmm::InitModule(env, exports); }
NODE_API_MODULE(vmm_kvm, Init)
