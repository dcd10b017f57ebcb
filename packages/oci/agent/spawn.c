// A process of the container (OCI runtime-spec config.md "Process"): stdio pipes or a pty
// ("terminal"), the root (chroot into /newroot: the agent itself stays outside so it can start
// further processes there), cwd, rlimits, user (additionalGids, gid, uid in that order, so that
// dropping uid comes last), env, then the program found on the process's own PATH. The child
// reports through a close-on-exec status pipe: 'R' when everything up to execve is done (the
// container is "created"), then either nothing (EOF: execve worked) or 'E' and the message.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "ns.h"

static void fail(int status, const char *fmt, const char *a, const char *b) {
  char msg[1024];
  int n = snprintf(msg, sizeof msg, "E");
  n += snprintf(msg + n, sizeof msg - n, fmt, a, b);
  if (write(status, msg, n) < 0) {}
  _exit(127);
}

// execvp's search, on the container's PATH rather than the agent's (runc's LookPath wording).
static const char *look_path(const char *file, char *const env[], char *buf, size_t len) {
  if (strchr(file, '/')) return file;
  const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (int i = 0; env[i]; i++)
    if (strncmp(env[i], "PATH=", 5) == 0) path = env[i] + 5;
  for (const char *p = path;;) {
    const char *colon = strchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    snprintf(buf, len, "%.*s/%s", (int)n, n ? p : ".", file);
    struct stat st;
    if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0) return buf;
    if (!colon) return NULL;
    p = colon + 1;
  }
}

static void child(const struct spec *s, int status, int go, int fds[3], const char *pts) {
  // Signals the agent blocks or ignores are the program's to handle again.
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  signal(SIGPIPE, SIG_DFL);
  setsid();
  if (pts) {
    int fd = open(pts, O_RDWR);
    if (fd < 0) fail(status, "open %s: %s", pts, strerror(errno));
    ioctl(fd, TIOCSCTTY, 0);
    fds[0] = fds[1] = fds[2] = fd;
  }
  for (int i = 0; i < 3; i++) dup2(fds[i], i);
  for (int i = 3; i < 1024; i++)
    if (i != status && i != go) close(i);
  char err[1024];
  if (spec_get(s, 'P') && remount_proc(err, sizeof err) < 0) fail(status, "%s%s", err, "");
  if (chroot(NEWROOT) < 0) fail(status, "chroot %s: %s", NEWROOT, strerror(errno));
  const char *cwd = spec_get(s, 'c');
  if (chdir(cwd ? cwd : "/") < 0)
    fail(status, "chdir to cwd (\"%s\") set in config.json failed: %s", cwd ? cwd : "/", strerror(errno));
  const char *umask_s = spec_get(s, 'k');
  umask(umask_s ? strtoul(umask_s, NULL, 8) : 022);
  size_t nargs = 0, nenv = 0, ngroups = 0;
  for (size_t i = 0; i < s->n; i++) {
    nargs += s->r[i].key == 'a';
    nenv += s->r[i].key == 'e';
    ngroups += s->r[i].key == 'G';
  }
  char **argv = calloc(nargs + 1, sizeof *argv), **envp = calloc(nenv + 1, sizeof *envp);
  gid_t *groups = calloc(ngroups + 1, sizeof *groups);
  size_t a = 0, e = 0, g = 0;
  for (size_t i = 0; i < s->n; i++) {
    struct record *r = &s->r[i];
    if (r->key == 'a') argv[a++] = r->value;
    else if (r->key == 'e') envp[e++] = r->value;
    else if (r->key == 'G') groups[g++] = (gid_t)strtoul(r->value, NULL, 10);
    else if (r->key == 'l') {
      // "RESOURCE SOFT HARD" with RLIMIT_* numbers (config.md "POSIX process": rlimits).
      unsigned long res;
      unsigned long long soft, hard;
      if (sscanf(r->value, "%lu %llu %llu", &res, &soft, &hard) == 3) {
        struct rlimit rl = {(rlim_t)soft, (rlim_t)hard};
        if (setrlimit((int)res, &rl) < 0) fail(status, "setrlimit %s: %s", r->value, strerror(errno));
      }
    }
  }
  if (nargs == 0) fail(status, "%s%s", "args must not be empty", "");
  const char *gid = spec_get(s, 'g'), *uid = spec_get(s, 'u');
  if (setgroups(ngroups, groups) < 0) fail(status, "setgroups: %s%s", strerror(errno), "");
  if (gid && setgid((gid_t)strtoul(gid, NULL, 10)) < 0) fail(status, "setgid %s: %s", gid, strerror(errno));
  if (uid && setuid((uid_t)strtoul(uid, NULL, 10)) < 0) fail(status, "setuid %s: %s", uid, strerror(errno));
  char found[4096];
  const char *path = look_path(argv[0], envp, found, sizeof found);
  if (!path) fail(status, "exec: \"%s\": executable file not found in $PATH%s", argv[0], "");
  if (write(status, "R", 1) < 0) _exit(127);
  if (spec_get(s, 'w')) {
    char b;
    while (read(go, &b, 1) < 0 && errno == EINTR) {}
  }
  execve(path, argv, envp);
  fail(status, "exec %s: %s", path, strerror(errno));
}

// The pty comes from the container's own devpts instance (mounted at /dev/pts with newinstance,
// as Docker asks), so that `tty` inside prints a /dev/pts path that exists there.
static int open_pty(char *pts, size_t len) {
  int m = open(NEWROOT "/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  const char *dir = NEWROOT "/dev/pts";
  if (m < 0) {
    m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    dir = "/dev/pts";
  }
  if (m < 0) return -1;
  int unlock = 0, n = 0;
  if (ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCGPTN, &n) < 0) {
    close(m);
    return -1;
  }
  snprintf(pts, len, "%s/%d", dir, n);
  return m;
}

int spawn_process(const struct spec *s, struct child *c, char *err, size_t errlen) {
  int st[2], go[2], in[2] = {-1, -1}, out[2] = {-1, -1}, er[2] = {-1, -1}, master = -1;
  char pts[64];
  c->terminal = spec_get(s, 't') != NULL;
  if (pipe2(st, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0) goto sys;
  if (c->terminal) {
    if ((master = open_pty(pts, sizeof pts)) < 0) goto sys;
  } else if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(er, O_CLOEXEC) < 0)
    goto sys;
  // 'P': the init of a new PID namespace (pidns.c); later children, the exec processes, join it.
  if (spec_get(s, 'P') && enter_pid_namespace(err, errlen) < 0) {
    int fds[] = {st[0], st[1], go[0], go[1], in[0], in[1], out[0], out[1], er[0], er[1], master};
    for (size_t k = 0; k < sizeof fds / sizeof fds[0]; k++)
      if (fds[k] >= 0) close(fds[k]);
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) goto sys;
  if (pid == 0) {
    int fds[3] = {in[0], out[1], er[1]};
    close(st[0]);
    close(go[1]);
    child(s, st[1], go[0], fds, c->terminal ? pts : NULL);
  }
  close(st[1]);
  close(go[0]);
  if (!c->terminal) {
    close(in[0]);
    close(out[1]);
    close(er[1]);
  }
  c->pid = pid;
  c->in = c->terminal ? master : in[1];
  c->out = c->terminal ? dup(master) : out[0];
  c->err = c->terminal ? -1 : er[0];
  c->go = go[1];
  c->status = st[0];
  char buf[1024];
  ssize_t n;
  while ((n = read(st[0], buf, sizeof buf - 1)) < 0 && errno == EINTR) {}
  if (n > 0 && buf[0] == 'R') return 0;
  buf[n > 0 ? n : 0] = 0;
  snprintf(err, errlen, "%s", n > 0 ? buf + 1 : "the process ended before it could run");
  return -1;
sys:
  snprintf(err, errlen, "creating the process: %s", strerror(errno));
  return -1;
}

int release_process(struct child *c, char *err, size_t errlen) {
  if (c->go >= 0) {
    if (write(c->go, "g", 1) < 0) {}
    close(c->go);
    c->go = -1;
  }
  if (c->status < 0) return 0;
  char buf[1024];
  ssize_t n;
  while ((n = read(c->status, buf, sizeof buf - 1)) < 0 && errno == EINTR) {}
  close(c->status);
  c->status = -1;
  if (n <= 0) return 0;
  buf[n] = 0;
  snprintf(err, errlen, "%s", buf[0] == 'E' ? buf + 1 : buf);
  return -1;
}
