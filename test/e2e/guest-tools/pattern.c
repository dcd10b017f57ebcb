// pattern <bytes> <seed>: writes <bytes> pseudo-random bytes (xorshift64 from <seed>) to stdout.
// In user space, which runs natively on kvm_pvm hosts; /dev/urandom's generator runs in the guest
// kernel, where every instruction is emulated (a 4 MiB read takes minutes there).
#include "sys.h"

static unsigned long buf[8192];

int main(int argc, char **argv) {
  if (argc < 3) {
    out(2, "usage: pattern <bytes> <seed>\n");
    return 2;
  }
  unsigned long left = atou(argv[1]);
  unsigned long x = atou(argv[2]) * 0x9e3779b97f4a7c15ul + 1;
  while (left > 0) {
    for (unsigned long i = 0; i < sizeof buf / sizeof buf[0]; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      buf[i] = x;
    }
    unsigned long n = left < sizeof buf ? left : sizeof buf;
    for (unsigned long done = 0; done < n;) {
      long r = sys3(SYS_write, 1, (char *)buf + done, n - done);
      if (r < 0) die("write", r);
      done += (unsigned long)r;
    }
    left -= n;
  }
  return 0;
}
