// KVM structures that end in a flexible array (kvm_cpuid2, kvm_msrs, kvm_msr_list,
// kvm_irq_routing) are declared with __DECLARE_FLEX_ARRAY in the uapi headers. Compiled as C++,
// its empty-struct wrapper takes a byte: the header grows (8 -> 12 bytes for kvm_cpuid2), the
// entries move, and the _IOWR request numbers computed from sizeof() change, so the kernel answers
// EINVAL. These few ioctls are therefore issued from C (flex.c). Each returns a count, or -errno.
#pragma once
#include <linux/kvm.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int vmm_get_supported_cpuid(int sys_fd, struct kvm_cpuid_entry2* out, unsigned max);
int vmm_get_vcpu_cpuid(int vcpu_fd, struct kvm_cpuid_entry2* out, unsigned max);
int vmm_set_vcpu_cpuid(int vcpu_fd, const struct kvm_cpuid_entry2* in, unsigned n);
int vmm_msr_index_list(int sys_fd, int feature, uint32_t* out, unsigned max);
// KVM_GET_MSRS (set 0) or KVM_SET_MSRS (set 1) on `msrs`, a struct kvm_msrs laid out by the caller
// (u32 nmsrs, u32 pad, nmsrs entries); returns how many entries KVM processed, or -errno.
int vmm_msrs(int vcpu_fd, int set, void* msrs);
// struct kvm_xsave ends in a flexible array too (__u32 extra[]): in C++ its sizeof, and so the
// KVM_GET_XSAVE / KVM_SET_XSAVE / KVM_GET_XSAVE2 numbers, come out 4 bytes too large. These are
// the numbers and the size as C computes them.
extern const unsigned long vmm_KVM_GET_XSAVE, vmm_KVM_SET_XSAVE, vmm_KVM_GET_XSAVE2;
extern const unsigned vmm_sizeof_kvm_xsave;

int vmm_set_gsi_routing(int vm_fd, const struct kvm_irq_routing_entry* entries, unsigned n);

#ifdef __cplusplus
}
#endif
