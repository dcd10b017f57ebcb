// The container's file system, from the 'C' message: the root (a 9p share of root.path, OCI
// runtime-spec config.md "Root"), the 9p shares the bind mounts come from, then the bundle's
// `mounts` in order (config.md "Mounts": "The runtime MUST mount entries in the listed order").
// The host side (src/mounts.ts) has already turned mount options into flags and data, the way
// mount(8) does, so this file only creates mount points and calls mount(2).
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "ns.h"

void agent_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "vmm-agent: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

// mkdir -p of path (absolute); the last component too when `last` is set.
static int mkdirs(const char *path, int last) {
  char buf[4096];
  size_t n = strlen(path);
  if (n >= sizeof buf) return errno = ENAMETOOLONG, -1;
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != 0) continue;
    if (buf[i] == 0 && !last) break;
    char c = buf[i];
    buf[i] = 0;
    if (mkdir(buf, 0755) < 0 && errno != EEXIST) return -1;
    buf[i] = c;
  }
  return 0;
}

// The mount point for a bind of a file is a file (runc creates it the same way).
static int make_target(const char *target, const char *source, int bind) {
  struct stat st;
  if (lstat(target, &st) == 0) return 0;
  struct stat src;
  if (bind && stat(source, &src) == 0 && !S_ISDIR(src.st_mode)) {
    if (mkdirs(target, 0) < 0) return -1;
    int fd = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    close(fd);
    return 0;
  }
  return mkdirs(target, 1);
}

#define P9_OPTIONS "trans=virtio,version=9p2000.L,msize=262144,cache=none"

static int mount_one(char *fields[6], char *err, size_t errlen) {
  const char *kind = fields[0], *source = fields[1], *fstype = fields[3], *data = fields[5];
  unsigned long flags = strtoul(fields[4], NULL, 10);
  char target[4096];
  if (strcmp(kind, "share") == 0) snprintf(target, sizeof target, "%s", fields[2]);
  else if (strcmp(kind, "root") == 0) snprintf(target, sizeof target, NEWROOT);
  else snprintf(target, sizeof target, NEWROOT "%s", fields[2]);

  if (strcmp(kind, "root") == 0 || strcmp(kind, "share") == 0) {
    if (mkdirs(target, 1) < 0) goto fail;
    if (strcmp(fstype, "initramfs") == 0) {
      // Without a 9p device (development only): the rootfs was packed into the initramfs.
      if (mount(source, target, NULL, MS_BIND | MS_REC, NULL) < 0) goto fail;
    } else if (mount(source, target, "9p", flags, P9_OPTIONS) < 0) goto fail;
    return 0;
  }
  int bind = strcmp(kind, "bind") == 0;
  // File systems this kernel does not have (cgroup, mqueue: the micro guest kernel has neither):
  // the container goes on without them rather than failing on what a VM has no use for.
  int optional = !strcmp(fstype, "cgroup") || !strcmp(fstype, "cgroup2") || !strcmp(fstype, "mqueue");
  if (make_target(target, source, bind) < 0) {
    if (optional) return agent_log("skipped %s on %s: %s", fstype, fields[2], strerror(errno)), 0;
    goto fail;
  }
  if (bind) {
    if (mount(source, target, NULL, MS_BIND | (flags & MS_REC), NULL) < 0) goto fail;
    // A bind takes the other flags only on a remount (mount(2), "Creating a bind mount").
    unsigned long extra = flags & ~(unsigned long)(MS_BIND | MS_REC);
    if (extra && mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | extra, NULL) < 0) goto fail;
    return 0;
  }
  if (mount(source, target, fstype, flags, *data ? data : NULL) < 0) {
    if (optional) return agent_log("skipped %s on %s: %s", fstype, fields[2], strerror(errno)), 0;
    goto fail;
  }
  return 0;
fail:
  snprintf(err, errlen, "error mounting \"%s\" to rootfs at \"%s\": %s", source, fields[2], strerror(errno));
  return -1;
}

int setup_container(const struct spec *s, char *err, size_t errlen) {
  for (size_t i = 0; i < s->n; i++) {
    struct record *r = &s->r[i];
    if (r->key == 'h') {
      if (sethostname(r->value, r->len) < 0) {
        snprintf(err, errlen, "sethostname %s: %s", r->value, strerror(errno));
        return -1;
      }
    } else if (r->key == 'M') {
      char *fields[6];
      char *p = r->value, *end = r->value + r->len;
      for (int f = 0; f < 6; f++) {
        if (p > end) {
          snprintf(err, errlen, "malformed mount record");
          return -1;
        }
        fields[f] = p;
        p += strlen(p) + 1;
      }
      if (mount_one(fields, err, errlen) < 0) return -1;
    }
  }
  return setup_network(s, err, errlen);  // net.c: lo, and the interface of the 'n' record
}
