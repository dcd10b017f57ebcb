// 'B', the host's first message on a session: the host's wall clock and fresh host entropy. A
// guest restored from a pre-booted template (packages/oci/src/template.ts) wakes with the clock
// and the kernel RNG state of the moment the template was saved, the same in every clone of it;
// this puts the host's time in (clock_settime(2), CLOCK_REALTIME) and mixes the bytes into the
// input pool and reseeds the CRNG at once, so that clones of one template neither share their
// time nor their "random" numbers. A cold boot gets it too (its RTC has whole seconds only).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

int apply_boot(const uint8_t *p, uint32_t len, char *err, size_t errlen) {
  if (len < BOOT_HEADER + BOOT_MIN_ENTROPY || len > BOOT_HEADER + 4096) {
    snprintf(err, errlen, "boot message of %u bytes (expected %d + %d to 4096)", len, BOOT_HEADER, BOOT_MIN_ENTROPY);
    return -1;
  }
  struct timespec ts = {.tv_sec = (time_t)le(p, 8), .tv_nsec = (long)le(p + 8, 4)};
  if (ts.tv_nsec >= 1000000000L) {
    snprintf(err, errlen, "boot message: %ld nanoseconds", ts.tv_nsec);
    return -1;
  }
  // clock_settime(2): CLOCK_REALTIME, settable with CAP_SYS_TIME (PID 1 is root).
  if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
    snprintf(err, errlen, "clock_settime: %s", strerror(errno));
    return -1;
  }
  // random(4), RNDADDENTROPY: "Add some additional entropy to the input pool, incrementing the
  // entropy count" (CAP_SYS_ADMIN), argument struct rand_pool_info { int entropy_count (bits);
  // int buf_size (bytes); __u32 buf[]; }. The host's bytes come from its getrandom(2): each one
  // is credited as 8 bits.
  uint32_t n = len - BOOT_HEADER;
  struct rand_pool_info *info = malloc(sizeof *info + n);
  info->entropy_count = (int)n * 8;
  info->buf_size = (int)n;
  memcpy(info->buf, p + BOOT_HEADER, n);
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  int r = fd < 0 ? -1 : ioctl(fd, RNDADDENTROPY, info);
  if (r == 0) {
    // include/uapi/linux/random.h, RNDRESEEDCRNG (Linux 4.17+): reseed the CRNG from the input
    // pool now. Without it an initialized CRNG takes new input only at its next scheduled
    // reseed (up to a minute), and until then two clones would still produce the same bytes.
    r = ioctl(fd, RNDRESEEDCRNG);
  }
  int e = errno;
  free(info);
  if (fd >= 0) close(fd);
  if (r < 0) {
    snprintf(err, errlen, "mixing the host's entropy into /dev/urandom: %s", strerror(e));
    return -1;
  }
  return 0;
}
