// The container's PID namespace (pid_namespaces(7)), as runc makes it when the bundle asks for a
// new `pid` namespace (OCI runtime-spec config-linux.md "Namespaces"): the container's init is
// PID 1 there, so `echo $$` prints 1 and a signal it has no handler for is not delivered to it
// (SIGTERM from `docker stop` then does nothing, and the stop ends with SIGKILL as under runc).
//
// The agent calls unshare(CLONE_NEWPID) just before it forks the init: that changes only where
// the agent's children go, so the init becomes PID 1 of the new namespace and every later child
// (each `exec` process) joins that namespace too, exactly as a setns() into it would place it,
// while the agent itself stays PID 1 of the guest and the parent that reaps them all. Once the
// init is gone the kernel kills the rest of the namespace, as for any container.
//
// /proc shows the PID namespace of the process that mounted it, and the bundle's proc mounts were
// made by the agent (setup.c, outside the namespace): the init makes them again, from inside,
// before it enters the root, with the flags they had (read back from /proc/self/mountinfo).
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "ns.h"

int enter_pid_namespace(char *err, size_t errlen) {
  static int entered;
  if (entered) {
    snprintf(err, errlen, "the container's PID namespace exists already");
    return -1;
  }
  if (unshare(CLONE_NEWPID) < 0) {
    snprintf(err, errlen, "unshare(CLONE_NEWPID): %s (the guest kernel needs CONFIG_PID_NS)", strerror(errno));
    return -1;
  }
  entered = 1;
  return 0;
}

// mountinfo's octal escapes (\040 for a space) undone, in place.
static void unescape(char *s) {
  char *w = s;
  for (char *p = s; *p; p++) {
    if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
      *w++ = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
      p += 3;
    } else *w++ = *p;
  }
  *w = 0;
}

static unsigned long option_flags(char *options) {
  static const struct {
    const char *name;
    unsigned long flag;
  } known[] = {{"ro", MS_RDONLY},     {"nosuid", MS_NOSUID},         {"nodev", MS_NODEV},
               {"noexec", MS_NOEXEC}, {"noatime", MS_NOATIME},       {"nodiratime", MS_NODIRATIME},
               {"relatime", MS_RELATIME}, {"strictatime", MS_STRICTATIME}};
  unsigned long flags = 0;
  for (char *save, *o = strtok_r(options, ",", &save); o; o = strtok_r(NULL, ",", &save))
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
      if (strcmp(o, known[k].name) == 0) flags |= known[k].flag;
  return flags;
}

// Each line (proc(5), /proc/pid/mountinfo): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER.
int proc_mounts(const char *mountinfo, struct proc_mount *out, int max) {
  int n = 0;
  char *copy = strdup(mountinfo), *save_line;
  for (char *line = strtok_r(copy, "\n", &save_line); line && n < max; line = strtok_r(NULL, "\n", &save_line)) {
    char *f[6], *save, *t = strtok_r(line, " ", &save);
    int k = 0;
    while (t && k < 6) {
      f[k++] = t;
      if (k < 6) t = strtok_r(NULL, " ", &save);
    }
    if (k < 6) continue;
    char *fstype = NULL;
    for (t = strtok_r(NULL, " ", &save); t; t = strtok_r(NULL, " ", &save))
      if (strcmp(t, "-") == 0) {
        fstype = strtok_r(NULL, " ", &save);
        break;
      }
    if (!fstype || strcmp(fstype, "proc") != 0) continue;
    unescape(f[4]);
    size_t root = strlen(NEWROOT);
    if (strncmp(f[4], NEWROOT, root) != 0 || (f[4][root] != '/' && f[4][root] != 0)) continue;
    snprintf(out[n].target, sizeof out[n].target, "%s", f[4]);
    out[n].flags = option_flags(f[5]);
    n++;
  }
  free(copy);
  return n;
}

int remount_proc(char *err, size_t errlen) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) {
    snprintf(err, errlen, "reading /proc/self/mountinfo: %s", strerror(errno));
    return -1;
  }
  char *text = NULL;
  size_t cap = 0, len = 0;
  for (;;) {
    if (cap - len < 4096) text = realloc(text, cap = cap * 2 + 4096);
    size_t n = fread(text + len, 1, cap - len - 1, f);
    if (n == 0) break;
    len += n;
  }
  fclose(f);
  text[len] = 0;
  struct proc_mount m[16];
  int n = proc_mounts(text, m, 16);
  free(text);
  for (int i = 0; i < n; i++) {
    if (umount2(m[i].target, MNT_DETACH) < 0 || mount("proc", m[i].target, "proc", m[i].flags, NULL) < 0) {
      snprintf(err, errlen, "mounting /proc of the container's PID namespace on %s: %s", m[i].target + strlen(NEWROOT),
               strerror(errno));
      return -1;
    }
  }
  return 0;
}
