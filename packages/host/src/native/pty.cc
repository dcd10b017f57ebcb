// Terminals for container runtimes (@vmm/oci): a pty pair, and handing its master to another
// process over a Unix socket with SCM_RIGHTS, which Node's net module cannot do. This is what
// runc does for `--console-socket` (the caller, containerd's shim, receives exactly one fd).
#include <fcntl.h>
#include <pty.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "host.h"

namespace vmm_host {

// openPty(raw): openpty(3) with both ends close-on-exec; raw: the termios of cfmakeraw(3) (no
// echo, no line editing, no output processing: a transparent byte pipe, for a relay whose far
// end is another terminal). Returns { master, slave, name }.
static Napi::Value OpenPty(const Napi::CallbackInfo& info) {
  int master, slave;
  char name[256];
  termios raw{};
  cfmakeraw(&raw);
  bool isRaw = info.Length() > 0 && info[0].ToBoolean();
  if (openpty(&master, &slave, name, isRaw ? &raw : nullptr, nullptr) < 0) ThrowSys(info.Env(), errno, "openpty");
  fcntl(master, F_SETFD, FD_CLOEXEC);
  fcntl(slave, F_SETFD, FD_CLOEXEC);
  Napi::Object r = Napi::Object::New(info.Env());
  r.Set("master", Napi::Number::New(info.Env(), master));
  r.Set("slave", Napi::Number::New(info.Env(), slave));
  r.Set("name", Napi::String::New(info.Env(), name));
  return r;
}

// sendFd(socketPath, fd): connects to the Unix stream socket at socketPath and sends fd with
// SCM_RIGHTS (unix(7)) alongside one byte of data (a message with ancillary data needs some),
// then closes the connection. The fd stays open here; the caller closes its copy.
static Napi::Value SendFd(const Napi::CallbackInfo& info) {
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = Int(info[1]);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) ThrowSys(info.Env(), ENAMETOOLONG, "connect");
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) ThrowSys(info.Env(), errno, "socket");
  if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    int e = errno;
    close(s);
    ThrowSys(info.Env(), e, "connect");
  }
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  // SAFETY: CMSG_DATA points into `control`, sized by CMSG_SPACE for exactly one int.
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t n;
  do n = sendmsg(s, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  int e = errno;
  close(s);
  if (n < 0) ThrowSys(info.Env(), e, "sendmsg");
  return info.Env().Undefined();
}

void InitPty(Napi::Env env, Napi::Object exports) {
  exports.Set("openPty", Napi::Function::New(env, OpenPty));
  exports.Set("sendFd", Napi::Function::New(env, SendFd));
}

}  // namespace vmm_host
