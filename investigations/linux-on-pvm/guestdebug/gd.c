// Can the VMM catch a user-mode SYSCALL on kvm_pvm with a hardware breakpoint on MSR_LSTAR
// (KVM_SET_GUEST_DEBUG) and finish it (CPL 0 from STAR) itself? Build: see run.sh next to it.
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MEM 0x400000
static uint8_t *mem;
static void w64(uint64_t a, uint64_t v) { memcpy(mem + a, &v, 8); }

int main(int argc, char **argv) {
  int use_gd = argc > 1 && !strcmp(argv[1], "guestdebug");
  int kvm = open("/dev/kvm", O_RDWR);
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  mem = mmap(0, MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  FILE *f = fopen("g.bin", "rb");
  size_t n = fread(mem + 0x10000, 1, 0x10000, f);
  fclose(f);
  uint64_t lstar = 0x10000 + 0x10 + 32 * 16; // exc_stubs at 0x10, 32 stubs of 16 bytes
  struct kvm_userspace_memory_region r = {0, 0, 0, MEM, (uint64_t)mem};
  ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r);
  // GDT: null, kernel code 64 (8), kernel data (0x10), user data (0x18), user code 64 (0x20), TSS (0x28).
  w64(0x500, 0); w64(0x508, 0x00af9a000000ffffULL); w64(0x510, 0x00cf92000000ffffULL);
  w64(0x518, 0x00cff2000000ffffULL); w64(0x520, 0x00affa000000ffffULL);
  w64(0x528, 0x0000890008000067ULL); w64(0x530, 0); w64(0x804, 0x8000);
  w64(0x9000, 0xa000 | 7); w64(0xa000, 0xb000 | 7);
  for (int i = 0; i < 512; i++) w64(0xb000 + i * 8, ((uint64_t)i << 21) | 0x87);
  for (int v = 0; v < 32; v++) { // IDT at 0x2000, interrupt gates to the stubs
    uint64_t off = 0x10010 + v * 16;
    uint8_t *g = mem + 0x2000 + v * 16;
    memset(g, 0, 16);
    g[0] = off; g[1] = off >> 8; g[2] = 8; g[5] = 0x8e; g[6] = off >> 16; g[7] = off >> 24;
  }
  uint16_t lim = 32 * 16 - 1; memcpy(mem + 0x600, &lim, 2); w64(0x602, 0x2000);
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  struct { struct kvm_cpuid2 c; struct kvm_cpuid_entry2 e[100]; } cpuid = {.c.nent = 100};
  ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid); // EFER.SCE needs the SYSCALL bit in the guest's CPUID
  ioctl(vcpu, KVM_SET_CPUID2, &cpuid);
  int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(0, sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  struct kvm_sregs s; ioctl(vcpu, KVM_GET_SREGS, &s);
  struct kvm_segment cs = {.base = 0, .limit = 0xffffffff, .selector = 8, .type = 11, .present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1};
  struct kvm_segment ds = cs; ds.selector = 0x10; ds.type = 3; ds.l = 0; ds.db = 1;
  s.cs = cs; s.ds = s.es = s.fs = s.gs = s.ss = ds;
  s.gdt.base = 0x500; s.gdt.limit = 0x37;
  s.cr3 = 0x9000; s.cr4 = 0x620; s.cr0 = 0x80050033; s.efer = 0x500;
  ioctl(vcpu, KVM_SET_SREGS, &s);
  struct kvm_regs regs; memset(&regs, 0, sizeof regs);
  regs.rip = 0x10000; regs.rsp = 0x8000; regs.rflags = 2;
  ioctl(vcpu, KVM_SET_REGS, &regs);
  if (use_gd) {
    struct kvm_guest_debug gd; memset(&gd, 0, sizeof gd);
    gd.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
    gd.arch.debugreg[0] = lstar;
    gd.arch.debugreg[7] = 0x1 | 0x400; // L0, execute breakpoint
    printf("KVM_SET_GUEST_DEBUG (DR0 = LSTAR 0x%lx): %d\n", (unsigned long)lstar, ioctl(vcpu, KVM_SET_GUEST_DEBUG, &gd));
  }
  for (int i = 0; i < 20; i++) {
    int rc = ioctl(vcpu, KVM_RUN, 0);
    ioctl(vcpu, KVM_GET_SREGS, &s); ioctl(vcpu, KVM_GET_REGS, &regs);
    if (rc < 0) { perror("KVM_RUN"); return 1; }
    if (run->exit_reason == KVM_EXIT_IO) {
      uint8_t al = *((uint8_t *)run + run->io.data_offset);
      printf("port 0x%x al 0x%x: rip 0x%llx cs 0x%x dpl %d\n", run->io.port, al, regs.rip, s.cs.selector, s.cs.dpl);
      return 0;
    }
    if (run->exit_reason == KVM_EXIT_DEBUG) {
      printf("KVM_EXIT_DEBUG exception %u pc 0x%llx dr6 0x%llx: cs 0x%x dpl %d rcx 0x%llx r11 0x%llx\n", run->debug.arch.exception,
             run->debug.arch.pc, run->debug.arch.dr6, s.cs.selector, s.cs.dpl, regs.rcx, regs.r11);
      if (s.cs.dpl == 3) { // finish the SYSCALL: CS/SS from STAR[47:32], CPL 0, rflags &= ~FMASK (0x200)
        s.cs = cs; s.ss = ds;
        ioctl(vcpu, KVM_SET_SREGS, &s);
        regs.rflags = (regs.rflags & ~0x200ULL) | 0x10000; // RF: do not hit the breakpoint again
        ioctl(vcpu, KVM_SET_REGS, &regs);
        printf("VMM finished the syscall: cs 8, rf set\n");
      }
      continue;
    }
    printf("exit reason %u rip 0x%llx cs 0x%x\n", run->exit_reason, regs.rip, s.cs.selector);
    if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) printf("  suberror %u\n", run->internal.suberror);
    return 1;
  }
  return 0;
}
