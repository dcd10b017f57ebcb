// Freestanding x86-64 Linux helpers for the tiny static guest tools of the end-to-end tests and
// benchmarks: no libc, raw system calls, a _start that calls main(argc, argv) and exits with its
// result. Built by guest-harness.mjs with gcc -static -nostdlib into an extra initramfs archive.
#ifndef VMM_GUEST_SYS_H
#define VMM_GUEST_SYS_H

typedef unsigned long size_t;
typedef long ssize_t;

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_lseek 8
#define SYS_pread64 17
#define SYS_socket 41
#define SYS_connect 42
#define SYS_shutdown 48
#define SYS_exit_group 231
#define SYS_clock_gettime 228

static inline long sys6(long n, long a, long b, long c, long d, long e, long f) {
  long r;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall"
                   : "=a"(r)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return r;
}
#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

static size_t slen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

static void out(int fd, const char *s) { sys3(SYS_write, fd, s, slen(s)); }

/** Decimal text of n (unsigned) into buf; returns buf. */
static char *utoa(unsigned long n, char *buf) {
  char tmp[24];
  int i = 0, j = 0;
  do tmp[i++] = (char)('0' + n % 10); while ((n /= 10) != 0);
  while (i > 0) buf[j++] = tmp[--i];
  buf[j] = 0;
  return buf;
}

static unsigned long atou(const char *s) {
  unsigned long n = 0;
  while (*s >= '0' && *s <= '9') n = n * 10 + (unsigned long)(*s++ - '0');
  return n;
}

static void die(const char *what, long err) {
  char b[24];
  out(2, what);
  out(2, ": error ");
  out(2, utoa((unsigned long)-err, b));
  out(2, "\n");
  sys3(SYS_exit_group, 1, 0, 0);
}

int main(int argc, char **argv);

void start_c(long *sp) {
  int argc = (int)sp[0];
  char **argv = (char **)(sp + 1);
  sys3(SYS_exit_group, main(argc, argv), 0, 0);
}

__asm__(".text\n.globl _start\n_start:\n xor %ebp, %ebp\n mov %rsp, %rdi\n and $-16, %rsp\n call start_c\n hlt\n");

#endif
