// A TAP made inside another network namespace (network_namespaces(7), setns(2)), the way Kata
// Containers connects a VM to a container's namespace: one short-lived thread joins the namespace,
// opens /dev/net/tun and attaches the TAP there, and ends; the fd it returns keeps the interface
// in that namespace (tun_chr_open takes the opener's namespace) while every other thread of this
// process, the event loop included, stays where it was. Also TUNGETIFF, to adopt a TAP fd that
// another process made and handed over (vmm-oci's create gives its sandbox one).
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <thread>

#include "host.h"

namespace vmm_host {

namespace {

struct Attempt {
  int fd = -1;
  int err = 0;
  const char* syscall = nullptr;
  const char* ioctlName = nullptr;
  char name[IFNAMSIZ] = {};
};

// Runs on its own thread: setns() changes only the calling thread's network namespace, so the
// thread that joined goes away with it and no other code ever runs in the caller's namespace by
// mistake.
void OpenInNamespace(int nsfd, const std::string& name, bool vnetHdr, Attempt* a) {
  // SAFETY: nsfd is an fd of a network namespace file opened by the caller, valid until it joins
  // this thread; CLONE_NEWNET makes the kernel refuse any other kind of namespace (EINVAL).
  if (setns(nsfd, CLONE_NEWNET) < 0) {
    a->err = errno;
    a->syscall = "setns";
    return;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    a->err = errno;
    a->syscall = "open";
    return;
  }
  ifreq ifr{};
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0);
  // SAFETY: fd is the /dev/net/tun fd opened above; ifr is a zeroed ifreq on this frame with a
  // NUL-terminated name, into which the kernel writes the name it chose.
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    a->err = errno;
    a->syscall = "ioctl";
    a->ioctlName = "TUNSETIFF";
    close(fd);
    return;
  }
  int sz = 12;  // struct virtio_net_hdr_v1 (virtio 1.2 §5.1.6), as openTap sets it
  // SAFETY: fd is the TAP attached above; the kernel reads one int from &sz on this frame.
  if (vnetHdr && ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
    a->err = errno;
    a->syscall = "ioctl";
    a->ioctlName = "TUNSETVNETHDRSZ";
    close(fd);
    return;
  }
  a->fd = fd;
  memcpy(a->name, ifr.ifr_name, IFNAMSIZ);
  a->name[IFNAMSIZ - 1] = 0;
}

}  // namespace

// openTapIn(namespacePath, name, { vnetHdr }) -> { fd, name }: a non-persistent TAP in the network
// namespace `namespacePath` (a bind-mounted /var/run/netns/X or /proc/PID/ns/net). It exists as
// long as the fd (or a copy of it) is open. Needs CAP_SYS_ADMIN (setns) and CAP_NET_ADMIN there.
static Napi::Value OpenTapIn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  std::string name = info[1].As<Napi::String>();
  bool vnetHdr = false;
  if (info.Length() > 2 && info[2].IsObject()) vnetHdr = info[2].As<Napi::Object>().Get("vnetHdr").ToBoolean();
  if (name.size() >= IFNAMSIZ) throw Napi::RangeError::New(env, "openTapIn: interface name longer than 15 bytes");
  int nsfd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) ThrowSys(env, errno, "open");
  Attempt a;
  std::thread t(OpenInNamespace, nsfd, name, vnetHdr, &a);
  t.join();
  close(nsfd);
  if (a.fd < 0) ThrowSys(env, a.err, a.syscall, a.ioctlName);
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, a.fd));
  out.Set("name", Napi::String::New(env, a.name));
  return out;
}

// tapInfo(fd) -> { name, vnetHdr }: what TUNGETIFF says of a TAP fd this process was handed.
// Anything but a TAP (a TUN, a fd that is no tun/tap at all) is an error naming it.
static Napi::Value TapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int(info[0]);
  ifreq ifr{};
  // SAFETY: the kernel writes one struct ifreq into ifr on this frame; a fd that is not an
  // attached tun/tap answers EBADFD or ENOTTY, reported with errno.
  if (ioctl(fd, TUNGETIFF, &ifr) < 0) ThrowSys(env, errno, "ioctl", "TUNGETIFF");
  if (!(ifr.ifr_flags & IFF_TAP))
    throw Napi::TypeError::New(env, "tapInfo: fd " + std::to_string(fd) + " is a TUN device, not a TAP");
  int sz = 0;
  bool vnetHdr = ifr.ifr_flags & IFF_VNET_HDR;
  // SAFETY: the kernel writes one int into sz on this frame.
  if (vnetHdr && ioctl(fd, TUNGETVNETHDRSZ, &sz) < 0) ThrowSys(env, errno, "ioctl", "TUNGETVNETHDRSZ");
  if (vnetHdr && sz != 12)
    throw Napi::RangeError::New(env, "tapInfo: the TAP's vnet header is " + std::to_string(sz) + " bytes, not 12");
  ifr.ifr_name[IFNAMSIZ - 1] = 0;
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", Napi::String::New(env, ifr.ifr_name));
  out.Set("vnetHdr", Napi::Boolean::New(env, vnetHdr));
  return out;
}

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("openTapIn", Napi::Function::New(env, OpenTapIn));
  exports.Set("tapInfo", Napi::Function::New(env, TapInfo));
}

}  // namespace vmm_host
