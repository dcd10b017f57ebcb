// TUN/TAP (Documentation/networking/tuntap.rst): opening a TAP interface and telling it which
// offloads the guest negotiated.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "host.h"

namespace vmm_host {

// openTap(name, { vnetHdr }) -> { fd, name }: opens /dev/net/tun as a TAP device, creating it when
// no interface has that name. With vnetHdr every packet carries a struct virtio_net_hdr (12 bytes,
// TUNSETVNETHDRSZ), so checksum and segmentation offloads can pass through. The fd is non-blocking.
static Napi::Value OpenTap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  bool vnetHdr = false;
  if (info.Length() > 1 && info[1].IsObject()) vnetHdr = info[1].As<Napi::Object>().Get("vnetHdr").ToBoolean();
  if (name.size() >= IFNAMSIZ) throw Napi::RangeError::New(env, "openTap: interface name longer than 15 bytes");
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) ThrowSys(env, errno, "open");
  ifreq ifr{};
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0);
  // SAFETY: fd is the /dev/net/tun fd opened above and owned here; ifr is a zeroed struct ifreq on
  // this stack frame with a NUL-terminated name; the kernel writes the chosen name back into it.
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    ThrowSys(env, e, "ioctl", "TUNSETIFF");
  }
  if (vnetHdr) {
    int sz = 12;  // struct virtio_net_hdr_v1 / _mrg_rxbuf (virtio 1.2 §5.1.6)
    // SAFETY: fd is the TAP fd attached above; the kernel reads one int from &sz on this frame.
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
  // SAFETY: fd is a TAP fd from openTap, owned by the caller's Tap; the flags go by value, so the
  // kernel reads no memory of ours. A non-TAP fd answers EBADFD/ENOTTY, reported with errno.
  if (ioctl(Int(info[0]), TUNSETOFFLOAD, (unsigned long)U32(info[1])) < 0)
    ThrowSys(info.Env(), errno, "ioctl", "TUNSETOFFLOAD");
  return info.Env().Undefined();
}

void InitTap(Napi::Env env, Napi::Object exports) {
  exports.Set("openTap", Napi::Function::New(env, OpenTap));
  exports.Set("setTapOffload", Napi::Function::New(env, SetTapOffload));
}

}  // namespace vmm_host
