// randread <device> <count>: <count> reads of 4 KiB with O_DIRECT at pseudo-random 4 KiB-aligned
// offsets of <device> (pread, one at a time, queue depth 1), timed with CLOCK_MONOTONIC. Prints
// "randread: <count> reads <ns> ns <iops> IOPS".
#include "sys.h"

#define O_RDONLY 0
#define O_DIRECT 040000
#define SEEK_END 2
#define CLOCK_MONOTONIC 1
#define BLOCK 4096

struct timespec {
  long tv_sec;
  long tv_nsec;
};

static unsigned char buf[BLOCK] __attribute__((aligned(BLOCK)));

static unsigned long now_ns(void) {
  struct timespec t;
  sys3(SYS_clock_gettime, CLOCK_MONOTONIC, &t, 0);
  return (unsigned long)t.tv_sec * 1000000000ul + (unsigned long)t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    out(2, "usage: randread <device> <count>\n");
    return 2;
  }
  long fd = sys3(SYS_open, argv[1], O_RDONLY | O_DIRECT, 0);
  if (fd < 0) die("open", fd);
  long size = sys3(SYS_lseek, fd, 0, SEEK_END);
  if (size < BLOCK) die("size", size < 0 ? size : -22);
  unsigned long blocks = (unsigned long)size / BLOCK;
  unsigned long count = atou(argv[2]);
  unsigned long x = 0x9e3779b97f4a7c15ul;
  unsigned long start = now_ns();
  for (unsigned long i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    long r = sys4(SYS_pread64, fd, buf, BLOCK, (long)((x % blocks) * BLOCK));
    if (r != BLOCK) die("pread", r < 0 ? r : -5);
  }
  unsigned long ns = now_ns() - start;
  char b[24];
  out(1, "randread: ");
  out(1, utoa(count, b));
  out(1, " reads ");
  out(1, utoa(ns, b));
  out(1, " ns ");
  out(1, utoa(ns ? count * 1000000000ul / ns : 0, b));
  out(1, " IOPS\n");
  return 0;
}
