// vmm-agent: PID 1 of the container guest. It mounts the guest's own /proc, /sys, /dev, tells the
// host it is up by connecting to host port 1023 over virtio-vsock (the VMM maps that to the Unix
// socket <vsock path>_1023, Firecracker's scheme), and listens on vsock port 1024 for more
// sessions (one per `exec`). A session is one stream carrying frames (proto.h): the host asks
// for the container's setup ('C', once) and for a process ('S'); the agent relays that process's
// stdin/stdout/stderr (or its pty), delivers signals ('K') and window sizes ('W') and finally
// reports its exit status ('X'). When the container's first process (the session that ran 'C')
// exits, every other process of the guest is killed: the container is over. A session may begin
// with the host's clock and entropy ('B', boot.c); 'T' closes the first session of a guest that
// the host then saves as a template (packages/oci/src/template.ts).
//
// Written in C against glibc's libc.a (gcc -static) rather than Go: the whole agent is a poll
// loop and a fork, a static C binary is ~800 KiB against Go's ~2 MiB, and Go's standard library
// has no AF_VSOCK address without golang.org/x/sys, which the build could not fetch offline.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

#define HELLO_PORT 1023
#define SESSION_PORT 1024
#define MAX_SESSIONS 64

struct session {
  int fd;
  uint8_t *in;  // bytes received, not yet a whole frame
  size_t inlen, incap;
  uint8_t *pend;  // stdin bytes the process has not taken yet
  size_t pendlen;
  int stdin_eof;
  int has_child, exited, exit_status, is_init, host_gone;
  struct child c;
};

static struct session sessions[MAX_SESSIONS];

static int send_frame(int fd, char type, const void *data, uint32_t len) {
  uint8_t h[FRAME_HEADER] = {len, len >> 8, len >> 16, len >> 24, (uint8_t)type};
  struct iovec v[2] = {{h, FRAME_HEADER}, {(void *)data, len}};
  struct msghdr m = {.msg_iov = v, .msg_iovlen = 2};
  size_t total = FRAME_HEADER + len;
  while (total > 0) {
    ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    total -= n;
    while (m.msg_iovlen && (size_t)n >= m.msg_iov[0].iov_len) {
      n -= m.msg_iov[0].iov_len;
      m.msg_iov++;
      m.msg_iovlen--;
    }
    if (m.msg_iovlen) {
      m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + n;
      m.msg_iov[0].iov_len -= n;
    }
  }
  return 0;
}

static void send_text(int fd, char type, const char *s) { send_frame(fd, type, s, strlen(s)); }

int parse_spec(const uint8_t *p, uint32_t len, struct spec *out) {
  out->r = NULL;
  out->n = 0;
  size_t cap = 0;
  for (uint32_t i = 0; i < len;) {
    if (len - i < 5) return -1;
    uint32_t n = p[i + 1] | p[i + 2] << 8 | p[i + 3] << 16 | (uint32_t)p[i + 4] << 24;
    if (n > len - i - 5) return -1;
    if (out->n == cap) {
      cap = cap ? cap * 2 : 16;
      out->r = realloc(out->r, cap * sizeof *out->r);
    }
    struct record *r = &out->r[out->n++];
    r->key = (char)p[i];
    r->len = n;
    r->value = malloc(n + 1);
    memcpy(r->value, p + i + 5, n);
    r->value[n] = 0;
    i += 5 + n;
  }
  return 0;
}

void free_spec(struct spec *s) {
  for (size_t i = 0; i < s->n; i++) free(s->r[i].value);
  free(s->r);
}

const char *spec_get(const struct spec *s, char key) {
  for (size_t i = 0; i < s->n; i++)
    if (s->r[i].key == key) return s->r[i].value;
  return NULL;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void end_session(struct session *s) {
  close_fd(&s->fd);
  if (s->has_child) {
    close_fd(&s->c.in);
    close_fd(&s->c.out);
    close_fd(&s->c.err);
    close_fd(&s->c.go);
    close_fd(&s->c.status);
  }
  free(s->in);
  free(s->pend);
  memset(s, 0, sizeof *s);
  s->fd = -1;
}

static void add_session(int fd) {
  for (int i = 0; i < MAX_SESSIONS; i++) {
    if (sessions[i].fd >= 0) continue;
    memset(&sessions[i], 0, sizeof sessions[i]);
    sessions[i].fd = fd;
    return;
  }
  close(fd);
}

// Moves what the process's stdin can take now; closes it after the host's EOF once drained.
static void flush_stdin(struct session *s) {
  while (s->pendlen > 0 && s->c.in >= 0) {
    ssize_t n = write(s->c.in, s->pend, s->pendlen);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) {
      s->pendlen = 0;
      break;
    }
    memmove(s->pend, s->pend + n, s->pendlen - n);
    s->pendlen -= n;
  }
  if (s->stdin_eof && s->pendlen == 0 && !s->c.terminal) close_fd(&s->c.in);
}

static void handle(struct session *s, char type, const uint8_t *p, uint32_t len) {
  char err[1024];
  struct spec spec;
  if (type == MSG_BOOT) {
    if (apply_boot(p, len, err, sizeof err) < 0) return send_text(s->fd, MSG_ERROR, err);
    return send_text(s->fd, MSG_ACK, "");
  }
  if (type == MSG_TEMPLATE && !s->is_init && !s->has_child) {
    // The host saves this guest as a template once this session is closed; each restore of it
    // opens a new session on the listening port (a listener survives the vsock transport reset
    // at restore, virtio 1.2 §5.10.6.6; connected sockets do not).
    send_text(s->fd, MSG_ACK, "");
    return end_session(s);
  }
  if (type == MSG_SETUP || type == MSG_SPAWN) {
    if (parse_spec(p, len, &spec) < 0) return send_text(s->fd, MSG_ERROR, "malformed spec");
    int r = type == MSG_SETUP ? setup_container(&spec, err, sizeof err)
            : s->has_child    ? (snprintf(err, sizeof err, "this session has a process"), -1)
                              : spawn_process(&spec, &s->c, err, sizeof err);
    if (type == MSG_SETUP) s->is_init = 1;
    else if (r == 0) {
      s->has_child = 1;
      fcntl(s->c.in, F_SETFL, O_NONBLOCK);
    } else if (s->c.pid > 0) {
      waitpid(s->c.pid, NULL, 0);
      int *fds[5] = {&s->c.in, &s->c.out, &s->c.err, &s->c.go, &s->c.status};
      for (int k = 0; k < 5; k++) close_fd(fds[k]);
      s->c.pid = 0;
    }
    free_spec(&spec);
    if (r < 0) return send_text(s->fd, MSG_ERROR, err);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", type == MSG_SPAWN ? (int)s->c.pid : 0);
    return send_text(s->fd, MSG_ACK, type == MSG_SPAWN ? pid : "");
  }
  if (!s->has_child) return send_text(s->fd, MSG_ERROR, "no process in this session");
  if (type == MSG_GO) {
    if (release_process(&s->c, err, sizeof err) < 0) return send_text(s->fd, MSG_ERROR, err);
    return send_text(s->fd, MSG_ACK, "");
  }
  if (type == MSG_STDIN) {
    s->pend = realloc(s->pend, s->pendlen + len);
    memcpy(s->pend + s->pendlen, p, len);
    s->pendlen += len;
    flush_stdin(s);
  } else if (type == MSG_STDIN_EOF) {
    s->stdin_eof = 1;
    flush_stdin(s);
  } else if (type == MSG_SIGNAL && len == 4) {
    int sig = p[0] | p[1] << 8 | p[2] << 16 | p[3] << 24;
    if (!s->exited) kill(s->c.pid, sig);
  } else if (type == MSG_WINSIZE && len == 4 && s->c.terminal) {
    struct winsize ws = {.ws_row = p[0] | p[1] << 8, .ws_col = p[2] | p[3] << 8};
    ioctl(s->c.in, TIOCSWINSZ, &ws);
  }
}

// Reads from the host; 0 when the stream ended.
static int receive(struct session *s) {
  if (s->incap - s->inlen < 65536) {
    s->incap = s->incap * 2 + 65536;
    s->in = realloc(s->in, s->incap);
  }
  ssize_t n = read(s->fd, s->in + s->inlen, s->incap - s->inlen);
  if (n < 0 && errno == EINTR) return 1;
  if (n <= 0) return 0;
  s->inlen += n;
  size_t off = 0;
  while (s->inlen - off >= FRAME_HEADER) {
    uint8_t *h = s->in + off;
    uint32_t len = h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24;
    if (len > FRAME_MAX) return 0;
    if (s->inlen - off < FRAME_HEADER + len) break;
    handle(s, (char)h[4], h + FRAME_HEADER, len);
    if (s->fd < 0) return 0;
    off += FRAME_HEADER + len;
  }
  memmove(s->in, s->in + off, s->inlen - off);
  s->inlen -= off;
  return 1;
}

// Output of the process to the host; the fd is closed at EOF (or EIO: the pty's last writer left).
static void relay(struct session *s, int *fd, char type, int nonblock) {
  static uint8_t buf[65536];
  for (;;) {
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) return close_fd(fd);
    send_frame(s->fd, type, buf, n);
    if (!nonblock) return;
  }
}

static void finish(struct session *s) {
  // What the process wrote before it ended is still in the pipes: drain it, then the status.
  for (int *fd = &s->c.out; fd == &s->c.out || fd == &s->c.err; fd = fd == &s->c.out ? &s->c.err : NULL) {
    if (*fd < 0) continue;
    fcntl(*fd, F_SETFL, O_NONBLOCK);
    relay(s, fd, fd == &s->c.out ? MSG_STDOUT : MSG_STDERR, 1);
  }
  int st = s->exit_status;
  uint32_t code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  uint8_t b[4] = {code, code >> 8, code >> 16, code >> 24};
  send_frame(s->fd, MSG_EXIT, b, 4);
  if (s->is_init) {
    // The container's init is gone: so is the container (as its PID namespace would be).
    kill(-1, SIGKILL);
  }
  shutdown(s->fd, SHUT_WR);
  end_session(s);
}

static void reap(void) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    for (int i = 0; i < MAX_SESSIONS; i++) {
      struct session *s = &sessions[i];
      if (s->fd >= 0 && s->has_child && s->c.pid == pid) {
        s->exited = 1;
        s->exit_status = st;
        finish(s);
      }
    }
  }
}

static void mount_base(void) {
  mkdir("/proc", 0555);
  mkdir("/sys", 0555);
  mkdir("/dev", 0755);
  if (mount("proc", "/proc", "proc", 0, NULL) < 0) agent_log("mount /proc: %s", strerror(errno));
  if (mount("sysfs", "/sys", "sysfs", 0, NULL) < 0) agent_log("mount /sys: %s", strerror(errno));
  if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) < 0 && errno != EBUSY)
    agent_log("mount /dev: %s", strerror(errno));
  mkdir("/dev/pts", 0755);
  if (mount("devpts", "/dev/pts", "devpts", 0, "ptmxmode=0666") < 0) agent_log("mount /dev/pts: %s", strerror(errno));
  mkdir("/run", 0755);
  mount("tmpfs", "/run", "tmpfs", 0, NULL);
}

static int vsock(int port, int do_connect) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_port = port};
  a.svm_cid = do_connect ? VMADDR_CID_HOST : VMADDR_CID_ANY;
  int r = do_connect ? connect(fd, (struct sockaddr *)&a, sizeof a)
                     : (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 16));
  if (r < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int main(void) {
  for (int i = 0; i < MAX_SESSIONS; i++) sessions[i].fd = -1;
  mount_base();
  signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  int lfd = vsock(SESSION_PORT, 0);
  if (lfd < 0) agent_log("listen on vsock port %d: %s", SESSION_PORT, strerror(errno));
  int hello = -1;
  for (int tries = 0; hello < 0; tries++) {
    hello = vsock(HELLO_PORT, 1);
    if (hello < 0) {
      if (tries % 50 == 0) agent_log("connect to host port %d: %s", HELLO_PORT, strerror(errno));
      usleep(100000);
    }
  }
  struct utsname u;
  uname(&u);
  send_text(hello, MSG_HELLO, u.release);
  add_session(hello);
  for (;;) {
    struct pollfd p[2 + MAX_SESSIONS * 4];
    struct session *owner[2 + MAX_SESSIONS * 4];
    int *which[2 + MAX_SESSIONS * 4];
    int n = 0;
    p[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    p[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
    for (int i = 0; i < MAX_SESSIONS; i++) {
      struct session *s = &sessions[i];
      if (s->fd < 0) continue;
      int *fds[4] = {&s->fd, &s->c.out, &s->c.err, &s->c.in};
      for (int k = 0; k < (s->has_child ? 4 : 1); k++) {
        if (*fds[k] < 0 || (k == 3 && s->pendlen == 0) || (k == 0 && s->host_gone)) continue;
        owner[n] = s;
        which[n] = fds[k];
        p[n++] = (struct pollfd){.fd = *fds[k], .events = k == 3 ? POLLOUT : POLLIN};
      }
    }
    if (poll(p, n, -1) < 0) continue;
    if (p[1].revents & POLLIN) {
      int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0) add_session(c);
    }
    for (int i = 2; i < n; i++) {
      struct session *s = owner[i];
      if (!p[i].revents || s->fd < 0 || *which[i] < 0) continue;
      if (which[i] == &s->fd) {
        if (!receive(s)) {
          // The host went away: its process goes too (an exec proxy that was killed).
          if (s->has_child && !s->exited) {
            s->host_gone = 1;
            kill(s->c.pid, SIGKILL);
          } else end_session(s);
        }
      } else if (which[i] == &s->c.in) flush_stdin(s);
      else relay(s, which[i], which[i] == &s->c.out ? MSG_STDOUT : MSG_STDERR, 0);
    }
    if (p[0].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {}
      reap();
    }
  }
}
