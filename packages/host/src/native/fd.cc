// Plain fds: close, eventfds (what KVM's ioeventfd and irqfd signal through), non-blocking reads
// and gathered writes straight into guest memory (a TAP's packets), and a libuv poll handle that
// calls JS on the event loop when an fd becomes readable.
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <vector>

#include "host.h"

namespace vmm_host {

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = Int(info[0]);
  // Linux closes the fd even when close() reports EINTR, so EINTR is not retried or reported.
  if (fd >= 0 && close(fd) < 0 && errno != EINTR) ThrowSys(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// eventfd(initial) -> fd: non-blocking, close-on-exec (eventfd(2)).
static Napi::Value EventFd(const Napi::CallbackInfo& info) {
  int fd = eventfd(info.Length() > 0 ? U32(info[0]) : 0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) ThrowSys(info.Env(), errno, "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

// eventfdRead(fd) -> bigint counter, or null when nothing was signalled (EAGAIN).
static Napi::Value EventFdRead(const Napi::CallbackInfo& info) {
  uint64_t v;
  // An eventfd read is exactly 8 bytes into `v` (eventfd(2)); the fd is non-blocking.
  ssize_t n = read(Int(info[0]), &v, sizeof v);
  if (n < 0) {
    if (errno == EAGAIN) return info.Env().Null();
    ThrowSys(info.Env(), errno, "read");
  }
  return Napi::BigInt::New(info.Env(), v);
}

static Napi::Value EventFdWrite(const Napi::CallbackInfo& info) {
  uint64_t v = info.Length() > 1 ? U64(info[1]) : 1;
  if (write(Int(info[0]), &v, sizeof v) < 0) ThrowSys(info.Env(), errno, "write");
  return info.Env().Undefined();
}

// The bytes of a typed array (a view of guest memory, usually) as a pointer and length. The view
// stays alive (it is an argument of the running call) for as long as the syscall uses it.
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
  uint32_t n = std::min<uint32_t>(a.Length(), 1024);  // IOV_MAX
  std::vector<iovec> iov(n);
  for (uint32_t i = 0; i < n; i++) iov[i] = BytesOf(a.Get(i));
  return IoResult(info.Env(), writev(Int(info[0]), iov.data(), int(n)), "writev");
}

// FdWatch(fd, onReadable, ref): a libuv poll handle that calls back into JS when `fd` becomes
// readable (level-triggered). Services ioeventfds (queue notifications) and TAP receive on the
// event loop without any vCPU exit. With ref false it does not keep the loop alive.
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
  // The handle is freed by libuv's close callback, after the loop has stopped using it.
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

void InitFd(Napi::Env env, Napi::Object exports) {
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("eventfd", Napi::Function::New(env, EventFd));
  exports.Set("eventfdRead", Napi::Function::New(env, EventFdRead));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventFdWrite));
  exports.Set("readFd", Napi::Function::New(env, ReadFd));
  exports.Set("writevFd", Napi::Function::New(env, WritevFd));
  exports.Set("FdWatch", FdWatch::Init(env));
}

}  // namespace vmm_host
