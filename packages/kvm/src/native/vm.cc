// VM ioctls: the VM fd's memory slots, in-kernel irqchip and PIT, clock, eventfds, GSI routing,
// and the VM-level state blobs a snapshot needs (irqchip, PIT, dirty log). Also the native Vm
// class's method table (Vm::Init).
//
// Every ioctl here is issued on the JS thread on fd_, the VM fd this object created and owns until
// DisposeAll (VM ioctls may come from any thread; Documentation/virt/kvm/api.rst "General
// description"). Every struct passed is a local of the calling frame, zero-initialised, so the
// kernel never reads uninitialised padding or memory we do not own.
#include <fcntl.h>
#include <unistd.h>

#include "flex.h"
#include "vm.h"

namespace vmm {

Vm::Vm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Vm>(info) {
  Napi::Env env = info.Env();
  int sysFd = Int(info[0]);
  // SAFETY: sysFd is the /dev/kvm fd the TypeScript Kvm owns and keeps open while it creates VMs;
  // KVM_CREATE_VM takes the machine type by value (0: the default). The VM fd is owned from here.
  fd_ = RetryIoctl(sysFd, KVM_CREATE_VM, 0ul);
  if (fd_ < 0) ThrowSys(env, errno, "ioctl", "KVM_CREATE_VM");
  fcntl(fd_, F_SETFD, FD_CLOEXEC);
  // SAFETY: system fd as above; no argument, the size comes back as the return value.
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

// Every VM method but the constructor starts here: after dispose the fd is closed (and its number
// may be reused), so no ioctl may reach it.
#define VM_FD(info)                                                                       \
  ({                                                                                      \
    if (disposed_) throw Napi::Error::New((info).Env(), "VM is disposed");                \
    fd_;                                                                                  \
  })

Napi::Value Vm::CheckExtension(const Napi::CallbackInfo& info) {
  // SAFETY: VM fd (see the top of this file); the capability number by value.
  return Napi::Number::New(info.Env(), IOCTL(info.Env(), VM_FD(info), KVM_CHECK_EXTENSION, Int(info[0])));
}

Napi::Value Vm::EnableCap(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  kvm_enable_cap cap{};
  cap.cap = U32(info[0]);
  Napi::Array args = info.Length() > 1 && info[1].IsArray() ? info[1].As<Napi::Array>() : Napi::Array::New(info.Env());
  for (uint32_t i = 0; i < args.Length() && i < 4; i++) cap.args[i] = U64(args.Get(i));
  // SAFETY: VM fd; &cap is a zeroed struct kvm_enable_cap on this frame that the kernel only reads.
  IOCTL(info.Env(), fd, KVM_ENABLE_CAP, &cap);
  return info.Env().Undefined();
}

// setUserMemoryRegion(slot, flags, guestAddress, size, hostAddress); size 0 deletes the slot.
Napi::Value Vm::SetUserMemoryRegion(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  kvm_userspace_memory_region r{};
  r.slot = U32(info[0]);
  r.flags = U32(info[1]);
  r.guest_phys_addr = U64(info[2]);
  r.memory_size = U64(info[3]);
  r.userspace_addr = U64(info[4]);
  // SAFETY: VM fd; &r is read by the kernel only. userspace_addr points into a mapping made by
  // mapMemory (the TypeScript Vm checks the range is inside the GuestRam it names, and GuestRam
  // keeps the mapping reserved until the VM is disposed); KVM validates alignment and overlaps
  // and answers EINVAL/EEXIST. The guest then reads and writes that memory from any vCPU thread.
  IOCTL(info.Env(), fd, KVM_SET_USER_MEMORY_REGION, &r);
  if (r.memory_size == 0)
    slotSizes_.erase(r.slot);
  else
    slotSizes_[r.slot] = r.memory_size;
  return info.Env().Undefined();
}

Napi::Value Vm::CreateIrqchip(const Napi::CallbackInfo& info) {
  // SAFETY: VM fd; no argument. Creates the PIC, IOAPIC and per-vCPU LAPICs, so it must come
  // before any KVM_CREATE_VCPU (the TypeScript board orders it so; KVM answers EINVAL otherwise).
  IOCTL(info.Env(), VM_FD(info), KVM_CREATE_IRQCHIP, 0);
  return info.Env().Undefined();
}

Napi::Value Vm::CreatePit2(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  kvm_pit_config cfg{};
  cfg.flags = info.Length() > 0 ? U32(info[0]) : 0;
  // SAFETY: VM fd; &cfg is a zeroed struct kvm_pit_config on this frame, read only. Needs the
  // in-kernel irqchip (ENOENT otherwise, reported).
  IOCTL(info.Env(), fd, KVM_CREATE_PIT2, &cfg);
  return info.Env().Undefined();
}

Napi::Value Vm::SetTssAddr(const Napi::CallbackInfo& info) {
  // SAFETY: VM fd; the guest-physical address goes by value (three pages below 4 GiB that must not
  // overlap guest RAM: the caller picks them in the MMIO gap).
  IOCTL(info.Env(), VM_FD(info), KVM_SET_TSS_ADDR, (unsigned long)U64(info[0]));
  return info.Env().Undefined();
}

Napi::Value Vm::SetIdentityMapAddr(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  uint64_t a = U64(info[0]);
  // SAFETY: VM fd; the kernel reads one u64 (the guest-physical address of one page) from &a.
  IOCTL(info.Env(), fd, KVM_SET_IDENTITY_MAP_ADDR, &a);
  return info.Env().Undefined();
}

Napi::Value Vm::IrqLine(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  kvm_irq_level l{};
  l.irq = U32(info[0]);
  l.level = U32(info[1]);
  // SAFETY: VM fd; &l is a struct kvm_irq_level on this frame, read only. Needs the in-kernel
  // irqchip (ENXIO otherwise, reported).
  IOCTL(info.Env(), fd, KVM_IRQ_LINE, &l);
  return info.Env().Undefined();
}

Napi::Value Vm::GetClock(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  kvm_clock_data c{};
  // SAFETY: VM fd; the kernel writes sizeof(struct kvm_clock_data) bytes into c on this frame.
  IOCTL(info.Env(), fd, KVM_GET_CLOCK, &c);
  return Big(info.Env(), c.clock);
}

Napi::Value Vm::SetClock(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  kvm_clock_data c{};
  c.clock = U64(info[0]);
  // SAFETY: VM fd; &c is read only, flags 0 (no KVM_CLOCK_REALTIME: the clock is set as given).
  IOCTL(info.Env(), fd, KVM_SET_CLOCK, &c);
  return info.Env().Undefined();
}

// ioeventfd({ fd, address, length, datamatch?, pio, deassign })
Napi::Value Vm::Ioeventfd(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
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
  // SAFETY: VM fd; &e is read only. e.fd is an eventfd the caller's EventFd owns; the kernel takes
  // its own reference to the file, so closing it later cannot leave KVM with a dangling fd.
  IOCTL(info.Env(), fd, KVM_IOEVENTFD, &e);
  return info.Env().Undefined();
}

// irqfd({ fd, gsi, resampleFd?, deassign })
Napi::Value Vm::Irqfd(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
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
  // SAFETY: VM fd; &f is read only; the eventfds are the caller's, referenced by the kernel as for
  // KVM_IOEVENTFD. Needs the in-kernel irqchip.
  IOCTL(info.Env(), fd, KVM_IRQFD, &f);
  return info.Env().Undefined();
}

// setGsiRouting([{ gsi, type: 'irqchip', irqchip, pin } | { gsi, type: 'msi', addressLo, addressHi, data }])
Napi::Value Vm::SetGsiRouting(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
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
  // The ioctl itself is in flex.c (its struct ends in a flexible array; see flex.h), on the VM fd
  // with the n entries built above.
  int r = vmm_set_gsi_routing(fd, entries.data(), n);
  if (r < 0) ThrowSys(info.Env(), -r, "ioctl", "KVM_SET_GSI_ROUTING");
  return info.Env().Undefined();
}

// ---- VM state blobs (snapshots): each kernel struct whole, as bytes ---------------------------

// getIrqchip(chip) -> ArrayBuffer: struct kvm_irqchip for chip 0 (PIC master), 1 (PIC slave) or
// 2 (IOAPIC); chip_id in its first u32, the chip's state in the 512-byte union after the pad.
Napi::Value Vm::GetIrqchip(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  kvm_irqchip c{};
  c.chip_id = U32(info[0]);
  // SAFETY: VM fd; the kernel reads chip_id and writes sizeof(struct kvm_irqchip) bytes into c on
  // this frame. Without the in-kernel irqchip it answers ENXIO, and EINVAL for another chip_id.
  IOCTL(info.Env(), fd, KVM_GET_IRQCHIP, &c);
  return CopyOut(info.Env(), &c, sizeof c);
}

// setIrqchip(bytes): a struct kvm_irqchip as getIrqchip returned it (chip_id says which chip).
Napi::Value Vm::SetIrqchip(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  kvm_irqchip c{};
  memcpy(&c, BytesIn(info.Env(), info[0], sizeof c, "setIrqchip"), sizeof c);
  // SAFETY: VM fd; c is a copy on this frame of exactly sizeof(struct kvm_irqchip) bytes (checked
  // by BytesIn), read only by the kernel, which validates chip_id.
  IOCTL(info.Env(), fd, KVM_SET_IRQCHIP, &c);
  return info.Env().Undefined();
}

// getPit2() -> ArrayBuffer: struct kvm_pit_state2 (three channels, flags).
Napi::Value Vm::GetPit2(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  kvm_pit_state2 s{};
  // SAFETY: VM fd; the kernel writes sizeof(struct kvm_pit_state2) bytes into s on this frame.
  // Without an in-kernel PIT (KVM_CREATE_PIT2) it answers ENXIO.
  IOCTL(info.Env(), fd, KVM_GET_PIT2, &s);
  return CopyOut(info.Env(), &s, sizeof s);
}

Napi::Value Vm::SetPit2(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  kvm_pit_state2 s{};
  memcpy(&s, BytesIn(info.Env(), info[0], sizeof s, "setPit2"), sizeof s);
  // SAFETY: VM fd; s is a checked-size copy on this frame, read only by the kernel.
  IOCTL(info.Env(), fd, KVM_SET_PIT2, &s);
  return info.Env().Undefined();
}

// getDirtyLog(slot) -> ArrayBuffer: the slot's dirty bitmap (bit n = page n written since the
// last call; KVM clears it as it copies, without KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2).
Napi::Value Vm::GetDirtyLog(const Napi::CallbackInfo& info) {
  int fd = VM_FD(info);
  uint32_t slot = U32(info[0]);
  auto it = slotSizes_.find(slot);
  // The kernel writes ALIGN(pages, 64) / 8 bytes (kvm_dirty_bitmap_bytes): the size comes from
  // the slot's size as this object registered it, never from JS, so the kernel cannot write past
  // the buffer. An unknown slot passes no buffer; KVM answers ENOENT before touching it.
  uint64_t pages = it == slotSizes_.end() ? 0 : (it->second + 4095) / 4096;
  std::vector<uint64_t> bitmap((pages + 63) / 64);
  kvm_dirty_log d{};
  d.slot = slot;
  d.dirty_bitmap = bitmap.empty() ? nullptr : bitmap.data();
  // SAFETY: VM fd; &d is read only, and d.dirty_bitmap points at bitmap (sized above for this
  // slot, alive for the call), which the kernel fills. A slot without KVM_MEM_LOG_DIRTY_PAGES
  // answers ENOENT.
  IOCTL(info.Env(), fd, KVM_GET_DIRTY_LOG, &d);
  return CopyOut(info.Env(), bitmap.data(), bitmap.size() * sizeof(uint64_t));
}

#undef VM_FD

Napi::Function Vm::Init(Napi::Env env) {
  return DefineClass(env, "Vm",
                     {
                         // vm.cc
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
                         InstanceMethod("getIrqchip", &Vm::GetIrqchip),
                         InstanceMethod("setIrqchip", &Vm::SetIrqchip),
                         InstanceMethod("getPit2", &Vm::GetPit2),
                         InstanceMethod("setPit2", &Vm::SetPit2),
                         InstanceMethod("getDirtyLog", &Vm::GetDirtyLog),
                         // vcpu.cc
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
                         // vcpu_state.cc
                         InstanceMethod("getVcpuState", &Vm::GetVcpuState),
                         InstanceMethod("setVcpuState", &Vm::SetVcpuState),
                         InstanceMethod("msrs", &Vm::Msrs),
                         InstanceMethod("setCpuid", &Vm::SetCpuid),
                         InstanceMethod("getCpuid", &Vm::GetCpuid),
                         InstanceMethod("getTscKhz", &Vm::GetTscKhz),
                         // vcpu_seccomp.cc
                         InstanceMethod("setVcpuFilter", &Vm::SetVcpuFilter),
                     });
}

}  // namespace vmm
