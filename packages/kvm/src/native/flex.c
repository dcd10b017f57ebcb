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
  // SAFETY: c holds `max` entries after the header.
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
  // SAFETY: c holds n initialised entries.
  int r = ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0 ? -errno : (int)n;
  free(c);
  return r;
}

int vmm_msr_index_list(int sys_fd, int feature, uint32_t* out, unsigned max) {
  unsigned long req = feature ? KVM_GET_MSR_FEATURE_INDEX_LIST : KVM_GET_MSR_INDEX_LIST;
  struct kvm_msr_list* l = calloc(1, sizeof(*l) + max * sizeof(uint32_t));
  if (!l) return -ENOMEM;
  l->nmsrs = max;
  // SAFETY: l holds `max` indices after the header.
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

static int msrs(int fd, unsigned long req, struct kvm_msr_entry* entries, unsigned n) {
  struct kvm_msrs* m = calloc(1, sizeof(*m) + n * sizeof(struct kvm_msr_entry));
  if (!m) return -ENOMEM;
  m->nmsrs = n;
  memcpy(m->entries, entries, n * sizeof(struct kvm_msr_entry));
  // SAFETY: m holds n entries; KVM returns how many it processed.
  int r = ioctl(fd, req, m);
  if (r < 0) {
    r = -errno;
  } else {
    memcpy(entries, m->entries, n * sizeof(struct kvm_msr_entry));
  }
  free(m);
  return r;
}

int vmm_get_msrs(int vcpu_fd, struct kvm_msr_entry* entries, unsigned n) {
  return msrs(vcpu_fd, KVM_GET_MSRS, entries, n);
}

int vmm_set_msrs(int vcpu_fd, const struct kvm_msr_entry* entries, unsigned n) {
  return msrs(vcpu_fd, KVM_SET_MSRS, (struct kvm_msr_entry*)entries, n);
}

int vmm_set_gsi_routing(int vm_fd, const struct kvm_irq_routing_entry* entries, unsigned n) {
  struct kvm_irq_routing* r = calloc(1, sizeof(*r) + n * sizeof(struct kvm_irq_routing_entry));
  if (!r) return -ENOMEM;
  r->nr = n;
  memcpy(r->entries, entries, n * sizeof(struct kvm_irq_routing_entry));
  // SAFETY: r holds n initialised routing entries.
  int rc = ioctl(vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : (int)n;
  free(r);
  return rc;
}
