// See flex.h for why these ioctls live in a C file.
#include "flex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

static int cpuid_get(int fd, unsigned long req, struct kvm_cpuid_entry2* out, unsigned max) {
  struct kvm_cpuid2* c = calloc(1, sizeof(*c) + max * sizeof(struct kvm_cpuid_entry2));
  if (!c) return -ENOMEM;
  c->nent = max;
  // SAFETY: fd is the system fd (KVM_GET_SUPPORTED_CPUID) or a stopped vCPU's fd on its own thread
  // (KVM_GET_CPUID2), as the callers ensure; c is ours, sized for `max` entries after the header,
  // and nent tells the kernel so: it writes at most that many (E2BIG otherwise).
  int r = ioctl(fd, req, c);
  if (r < 0) {
    r = -errno;
  } else {
    memcpy(out, c->entries, c->nent * sizeof(struct kvm_cpuid_entry2));
    r = (int)c->nent;
  }
  free(c);
  return r;
}

int vmm_get_supported_cpuid(int sys_fd, struct kvm_cpuid_entry2* out, unsigned max) {
  return cpuid_get(sys_fd, KVM_GET_SUPPORTED_CPUID, out, max);
}

int vmm_get_vcpu_cpuid(int vcpu_fd, struct kvm_cpuid_entry2* out, unsigned max) {
  return cpuid_get(vcpu_fd, KVM_GET_CPUID2, out, max);
}

int vmm_set_vcpu_cpuid(int vcpu_fd, const struct kvm_cpuid_entry2* in, unsigned n) {
  struct kvm_cpuid2* c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
  if (!c) return -ENOMEM;
  c->nent = n;
  memcpy(c->entries, in, n * sizeof(struct kvm_cpuid_entry2));
  // SAFETY: a stopped vCPU's fd on its own thread (the caller ensures it); c is ours and holds the
  // n initialised entries nent announces, read only by the kernel.
  int r = ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0 ? -errno : (int)n;
  free(c);
  return r;
}

int vmm_msr_index_list(int sys_fd, int feature, uint32_t* out, unsigned max) {
  unsigned long req = feature ? KVM_GET_MSR_FEATURE_INDEX_LIST : KVM_GET_MSR_INDEX_LIST;
  struct kvm_msr_list* l = calloc(1, sizeof(*l) + max * sizeof(uint32_t));
  if (!l) return -ENOMEM;
  l->nmsrs = max;
  // SAFETY: the system fd; l is ours, sized for `max` indices, which nmsrs tells the kernel (it
  // answers E2BIG rather than write more).
  int r = ioctl(sys_fd, req, l);
  if (r < 0) {
    r = -errno;
  } else {
    memcpy(out, l->indices, l->nmsrs * sizeof(uint32_t));
    r = (int)l->nmsrs;
  }
  free(l);
  return r;
}

int vmm_msrs(int vcpu_fd, int set, void* msrs) {
  // SAFETY: vcpu_fd is a vCPU fd and this runs on its thread while it is stopped (the caller,
  // vcpu_state.cc, ensures both); msrs holds the header and as many entries as its nmsrs says (the
  // caller checked the length), which the kernel reads and, for a get, fills in.
  int r = ioctl(vcpu_fd, set ? KVM_SET_MSRS : KVM_GET_MSRS, (struct kvm_msrs*)msrs);
  return r < 0 ? -errno : r;
}

int vmm_set_gsi_routing(int vm_fd, const struct kvm_irq_routing_entry* entries, unsigned n) {
  struct kvm_irq_routing* r = calloc(1, sizeof(*r) + n * sizeof(struct kvm_irq_routing_entry));
  if (!r) return -ENOMEM;
  r->nr = n;
  memcpy(r->entries, entries, n * sizeof(struct kvm_irq_routing_entry));
  // SAFETY: the VM fd (any thread); r is ours and holds the n initialised entries nr announces,
  // read only by the kernel, which replaces the whole routing table with them.
  int rc = ioctl(vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : (int)n;
  free(r);
  return rc;
}

const unsigned long vmm_KVM_GET_XSAVE = KVM_GET_XSAVE;
const unsigned long vmm_KVM_SET_XSAVE = KVM_SET_XSAVE;
const unsigned long vmm_KVM_GET_XSAVE2 = KVM_GET_XSAVE2;
const unsigned vmm_sizeof_kvm_xsave = sizeof(struct kvm_xsave);
