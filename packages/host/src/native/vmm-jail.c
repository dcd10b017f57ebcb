// vmm-jail: the native half of `vmm jail` (packages/cli/src/jail/). Node is multi-threaded, so it
// cannot unshare(CLONE_NEWNS) itself (unshare(2): CLONE_NEWNS needs an fs struct not shared with
// other threads), and namespaces, mounts and pivot_root are done here, in a small single-threaded
// program that ends in execve of the VMM. The TypeScript side decides *what* the jail holds (every
// bind mount, device node, limit and id, in a plan read from fd 3); this program does it, always in
// the one order below (Firecracker's jailer order, docs/jailer.md), and refuses to go on at the
// first failure, naming the step and the path.
//
//   supervisor (this process, host pid namespace)
//     1. read the plan from fd 3, then close every inherited fd above 2 (close_range(2))
//     2. setrlimit(2) for each limit; join the cgroups (cgroups(7): writing 0 to cgroup.procs moves
//        the writer; the child inherits the group on fork(2))
//     3. setns(2) into the given network namespace (its fd is opened first, on the host's root)
//     4. unshare(CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS), fork: the child is pid 1 of a new pid
//        namespace (pid_namespaces(7)); the supervisor forwards the stop signals to it (TERM, INT, HUP,
//        QUIT, USR1, USR2, ALRM, CONT: those a container's sandbox passes on) and
//        exits with its status (128 + signal when a signal ended it)
//   child (pid 1 of the new pid namespace)
//     5. unshare(CLONE_NEWNS) here, not in the supervisor: pivot_root(2) moves every process of
//        the mount namespace whose root is the old root, and the supervisor stays on the host's
//     6. make every mount private, recursively (mount_namespaces(7), "shared subtrees": nothing
//        done here propagates back to the host), then mount a tmpfs on the jail root: the mount
//        points live in it and vanish with the namespace, so nothing is left on the host's disk
//     7. bind mounts (mount(2) MS_BIND, then MS_REMOUNT|MS_BIND to set ro/nosuid/nodev, since a
//        bind takes its flags only on a remount), symbolic links, a tmpfs /dev with the device
//        nodes (mknod(2)) owned by the jail's uid, a new /proc for the new pid namespace
//        (proc(5)), and the jail root remounted read-only
//     8. pivot_root(".", ".") and umount2(".", MNT_DETACH): the old root is stacked on the new one
//        and then detached (pivot_root(2), NOTES), so no path leads out of the jail
//     9. sethostname (the new UTS namespace), chdir, setgroups(0)/setresgid/setresuid
//        (credentials(7); from uid 0 to non-zero uids the capability sets are cleared,
//        capabilities(7)), PR_SET_NO_NEW_PRIVS and PR_SET_PDEATHSIG (prctl(2))
//    10. fork once more: this process stays as the namespace's init (pid 1, unprivileged now: it
//        forwards signals and reaps), the VMM is pid 2 and execve(2)s node
//
// The plan: one record per line, fields separated by TAB (the TypeScript side refuses paths with a
// TAB or a newline). Records: root <dir>; bind <src> <dst> ro|rw; symlink <target> <path>;
// dev <path> <major> <minor> <mode-octal> owned|root; proc; cgroup <cgroup.procs file>;
// netns <path>; rlimit <name> <soft> <hard>; hostname <name>; ids <uid> <gid>; cwd <path>;
// env <NAME=value>; exec <file> <argv0> <argv1>...; drop-late; a bind may end in
// `idmap <fsuid> <fsgid>` (vmm-jail-idmap.c: on-disk fsuid/fsgid shown as the jail's ids);
// caps <n>... (with drop-late: the VMM stays root but execs with only these capabilities, in every
// set, the bounding set included: a machine with a writable virtio-9p share, whose server makes
// the guest's owners and modes on the host tree; packages/cli/src/jail/default.ts says which).
//
// For a VMM whose caller hands it open files and then goes away (the OCI runtime's sandbox,
// packages/oci/src/sandbox-jail.ts):
//   fd <src> <dst>  the inherited fd <src> is kept through step 1 and is the VMM's fd <dst> (dst 3
//                   to 99; a status pipe, a TAP, a pty), closed in the supervisor and the init
//   ctty <fd>       the VMM starts a session of its own (setsid(2)) with the terminal on its fd
//                   <fd> as its controlling terminal (TIOCSCTTY, tty_ioctl(4)): its SIGWINCH
//   detached        the supervisor does not die with its parent (no PR_SET_PDEATHSIG): the
//                   caller exits once the VMM is ready, and the supervisor's own parent (a
//                   subreaper such as containerd's shim) waits for it
//   log <file>      each message of this program is appended to <file> too (opened on the host,
//                   before anything else): a caller whose stderr went elsewhere reads why it failed
//
// drop-late (the default jail of `vmm run`/`vmm restore`, packages/cli/src/jail/default.ts): step 9
// sets no ids for the VMM; it execs as root in the jail (its namespaces, its root, no_new_privs),
// builds the machine (opens /dev/kvm, disks, the memory file, TAPs, sockets with root's access to
// the files the manifest names) and drops to the plan's ids itself before the first guest
// instruction (packages/cli/src/jail/drop.ts). The jail's init (pid 1) does not wait for that: right
// after the fork it keeps CAP_KILL alone (capabilities(7): bounding set, then capset(2)), so it can
// still forward a stop signal to the VMM, root until its drop, and nothing else.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm-jail.h"

#define MAX_PLAN (4 << 20)
#define MAX_FIELDS 512

#define die jail_die

// The plan's `fd` records, moved up to KEEP_BASE + i until the VMM's exec (see the header).
#define KEEP_BASE 100
#define MAX_KEPT 16
static int kept_dst[MAX_KEPT];
static int nkept;
static int log_fd = -1;

void jail_die(const char *fmt, ...) {
  int e = errno;
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = snprintf(msg, sizeof msg, "vmm-jail: ");
  n += vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
  va_end(ap);
  if (n < (int)sizeof msg && e != 0) n += snprintf(msg + n, sizeof msg - (size_t)n, ": %s", strerror(e));
  if (n > (int)sizeof msg - 2) n = (int)sizeof msg - 2;
  msg[n++] = '\n';
  if (write(2, msg, (size_t)n) < 0) {} // nobody may read stderr: the log below is the record
  if (log_fd >= 0 && write(log_fd, msg, (size_t)n) < 0) {}
  _exit(1);
}

// One parsed record: fields point into the plan buffer (TABs and newlines replaced by NUL).
typedef struct {
  char *f[MAX_FIELDS];
  int n;
  int userns; // an idmapped bind's user namespace (vmm-jail-idmap.c), made in main()
} record;

static record *records;
static int nrecords;
static const char *jail_root;
static int drop_late;
static uid_t jail_uid = (uid_t)-1;
static gid_t jail_gid = (gid_t)-1;

static void read_plan(void) {
  char *buf = malloc(MAX_PLAN + 1);
  if (!buf) die("out of memory");
  size_t len = 0;
  for (;;) {
    ssize_t r = read(3, buf + len, MAX_PLAN - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("reading the plan from fd 3");
    if (r == 0) break;
    len += (size_t)r;
    if (len == MAX_PLAN) {
      errno = 0;
      die("the plan is larger than %d bytes", MAX_PLAN);
    }
  }
  buf[len] = '\0';
  size_t lines = 1;
  for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
  records = calloc(lines, sizeof(record));
  if (!records) die("out of memory");
  char *line = buf;
  while (*line) {
    char *end = strchr(line, '\n');
    if (end) *end = '\0';
    record *r = &records[nrecords];
    for (char *p = line; p && r->n < MAX_FIELDS;) {
      r->f[r->n++] = p;
      p = strchr(p, '\t');
      if (p) *p++ = '\0';
    }
    if (r->n > 0 && r->f[0][0] != '\0') nrecords++;
    if (!end) break;
    line = end + 1;
  }
}

static void need(const record *r, int n) {
  errno = 0;
  if (r->n < n) die("plan record \"%s\" has %d fields, needs %d", r->f[0], r->n, n);
}

static unsigned long number(const char *s, int base) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, base);
  if (errno != 0 || *s == '\0' || *end != '\0') {
    errno = 0;
    die("plan: \"%s\" is not a number", s);
  }
  return v;
}

// Writes the whole of `text` to the file at `path`, for cgroup control files.
static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open %s", path);
  if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die("write \"%s\" to %s", text, path);
  close(fd);
}

// `path` under the jail root (the TypeScript side gives absolute in-jail paths).
static char *in_root(const char *path) {
  char *out;
  if (asprintf(&out, "%s%s", jail_root, path) < 0) die("out of memory");
  return out;
}

// mkdir -p of the directories above `full` (a path under the jail root, on our own tmpfs).
static void make_parents(char *full) {
  for (char *p = full + strlen(jail_root) + 1; (p = strchr(p, '/')); p++) {
    *p = '\0';
    if (mkdir(full, 0755) < 0 && errno != EEXIST) die("mkdir %s", full);
    *p = '/';
  }
}

static void bind(const record *r) {
  need(r, 4);
  const char *src = r->f[1];
  char *dst = in_root(r->f[2]);
  int ro = strcmp(r->f[3], "ro") == 0;
  struct stat st;
  if (stat(src, &st) < 0) die("bind: stat %s", src);
  make_parents(dst);
  // The mount point: a directory for a directory, an empty file for anything else (mount(2) binds a
  // file onto a file). EEXIST: an earlier bind made it, and a second bind stacks, which is fine.
  if (S_ISDIR(st.st_mode)) {
    if (mkdir(dst, 0755) < 0 && errno != EEXIST) die("mkdir %s", dst);
  } else {
    int fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) die("create mount point %s", dst);
    if (fd >= 0) close(fd);
  }
  if (r->n >= 7 && strcmp(r->f[4], "idmap") == 0) {
    jail_idmap_bind(src, dst, r->f[2], r->userns);
    close(r->userns);
    free(dst);
    return;
  }
  // Not MS_REC: only the named tree, without what is mounted below it on the host.
  if (mount(src, dst, NULL, MS_BIND, NULL) < 0) die("bind %s to %s", src, r->f[2]);
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0);
  if (mount(NULL, dst, NULL, flags, NULL) < 0) die("remount %s %s", r->f[2], ro ? "read-only" : "nosuid,nodev");
  free(dst);
}

static void make_symlink(const record *r) {
  need(r, 3);
  char *path = in_root(r->f[2]);
  make_parents(path);
  if (symlink(r->f[1], path) < 0 && errno != EEXIST) die("symlink %s -> %s", r->f[2], r->f[1]);
  free(path);
}

static void make_dev(const record *r) {
  need(r, 6);
  char *path = in_root(r->f[1]);
  make_parents(path);
  mode_t mode = (mode_t)number(r->f[4], 8);
  dev_t dev = makedev(number(r->f[2], 10), number(r->f[3], 10));
  if (mknod(path, S_IFCHR | mode, dev) < 0) die("mknod %s", r->f[1]);
  // mknod's mode is cut by the umask; chmod sets it exactly.
  if (chmod(path, mode) < 0) die("chmod %s", r->f[1]);
  if (strcmp(r->f[5], "owned") == 0 && chown(path, jail_uid, jail_gid) < 0) die("chown %s", r->f[1]);
  free(path);
}

static struct {
  const char *name;
  int resource;
} rlimits[] = {
    {"nofile", RLIMIT_NOFILE}, {"nproc", RLIMIT_NPROC},     {"fsize", RLIMIT_FSIZE},
    {"as", RLIMIT_AS},         {"core", RLIMIT_CORE},       {"memlock", RLIMIT_MEMLOCK},
    {"stack", RLIMIT_STACK},   {"cpu", RLIMIT_CPU},         {"data", RLIMIT_DATA},
};

static rlim_t rlimit_value(const char *s) {
  return strcmp(s, "unlimited") == 0 ? RLIM_INFINITY : (rlim_t)number(s, 10);
}

static void set_rlimit(const record *r) {
  need(r, 4);
  for (size_t i = 0; i < sizeof rlimits / sizeof rlimits[0]; i++) {
    if (strcmp(rlimits[i].name, r->f[1]) != 0) continue;
    struct rlimit l = {rlimit_value(r->f[2]), rlimit_value(r->f[3])};
    if (setrlimit(rlimits[i].resource, &l) < 0) die("setrlimit %s", r->f[1]);
    return;
  }
  errno = 0;
  die("plan: unknown rlimit \"%s\"", r->f[1]);
}

static int supervise(void (*body)(void), int init);
static void close_kept(void);
static void exec_vmm(void);

static const record *find(const char *op) {
  for (int i = 0; i < nrecords; i++)
    if (strcmp(records[i].f[0], op) == 0) return &records[i];
  return NULL;
}

// Steps 5-10, in the first child (pid 1 of the new pid namespace): never returns.
static void enter_jail(void) {
  if (unshare(CLONE_NEWNS) < 0) die("unshare(CLONE_NEWNS)");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / private (MS_REC|MS_PRIVATE)");
  // The root tmpfs holds only directories, empty mount-point files and links: 1 MiB is plenty.
  if (mount("tmpfs", jail_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
    die("mount a tmpfs on %s", jail_root);
  for (int i = 0; i < nrecords; i++) {
    const record *r = &records[i];
    if (strcmp(r->f[0], "bind") == 0) bind(r);
    else if (strcmp(r->f[0], "symlink") == 0) make_symlink(r);
  }
  // /dev: its own tmpfs (device nodes need a mount without nodev), only the listed nodes.
  char *dev = in_root("/dev");
  if (mkdir(dev, 0755) < 0 && errno != EEXIST) die("mkdir %s", dev);
  if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0) die("mount a tmpfs on /dev");
  for (int i = 0; i < nrecords; i++)
    if (strcmp(records[i].f[0], "dev") == 0) make_dev(&records[i]);
  // Read-only from here: device nodes stay usable (a read-only mount refuses writes to regular
  // files, directories and links only).
  if (mount(NULL, dev, NULL, MS_REMOUNT | MS_NOSUID | MS_NOEXEC | MS_RDONLY, NULL) < 0) die("remount /dev read-only");
  if (find("proc")) {
    char *proc = in_root("/proc");
    if (mkdir(proc, 0555) < 0 && errno != EEXIST) die("mkdir %s", proc);
    // This process is in the new pid namespace, so the new proc shows only that namespace.
    if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("mount /proc");
    free(proc);
  }
  if (mount(NULL, jail_root, NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_RDONLY, "mode=0755") < 0)
    die("remount the jail root read-only");
  if (chdir(jail_root) < 0) die("chdir %s", jail_root);
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root into %s", jail_root);
  if (umount2(".", MNT_DETACH) < 0) die("detach the old root");
  const record *cwd = find("cwd");
  if (chdir(cwd ? cwd->f[1] : "/") < 0) die("chdir %s (in the jail)", cwd ? cwd->f[1] : "/");
  const record *host = find("hostname");
  if (host && sethostname(host->f[1], strlen(host->f[1])) < 0) die("sethostname %s", host->f[1]);

  // Credentials last but for exec: group first (setresgid needs the privilege setresuid drops).
  // drop-late: the VMM drops them itself once its machine is built (see the header).
  if (!drop_late) {
    if (setgroups(0, NULL) < 0) die("setgroups(0)");
    if (setresgid(jail_gid, jail_gid, jail_gid) < 0) die("setresgid %u", (unsigned)jail_gid);
    if (setresuid(jail_uid, jail_uid, jail_uid) < 0) die("setresuid %u", (unsigned)jail_uid);
    if (jail_uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
      errno = 0;
      die("still able to become root after setresuid; refusing to go on");
    }
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("prctl(PR_SET_NO_NEW_PRIVS)");
  // After the uid change, which clears it: if the supervisor dies, so does the jail.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die("prctl(PR_SET_PDEATHSIG)");

  // 10. Fork once more: this process stays as the namespace's init (pid 1: it reaps and forwards
  // signals, pid_namespaces(7)), and the VMM is pid 2, so a signal that arrives before Node has
  // its handlers does what it does to any process (for pid 1, signals without a handler are
  // ignored, and a SIGTERM during start-up would be lost).
  exit(supervise(exec_vmm, 1));
}

// Of root's capabilities only those in `mask` stay, in every set (capabilities(7)): the bounding
// set first, as dropping from it needs CAP_SETPCAP; the inheritable and ambient sets empty, so an
// execve(2) as root gives exactly the bounding set. drop-late's init keeps CAP_KILL alone (to
// forward signals to the VMM while it is still root); a `caps` VMM keeps its list.
static void keep_caps(unsigned long long mask) {
  for (int cap = 0; cap <= 63; cap++)
    if (!(mask & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
      die("prctl(PR_CAPBSET_DROP, %d)", cap);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    die("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {{0}};
  data[0].effective = data[0].permitted = (unsigned)mask;
  data[1].effective = data[1].permitted = (unsigned)(mask >> 32);
  if (syscall(SYS_capset, &header, data) < 0) die("capset");
}

// The VMM: never returns.
static void exec_vmm(void) {
  const record *caps = find("caps");
  if (caps && drop_late) {
    unsigned long long mask = 0;
    for (int i = 1; i < caps->n; i++) mask |= 1ULL << number(caps->f[i], 10);
    keep_caps(mask);
  }
  char **envp = calloc((size_t)nrecords + 1, sizeof(char *));
  if (!envp) die("out of memory");
  int ne = 0;
  for (int i = 0; i < nrecords; i++)
    if (strcmp(records[i].f[0], "env") == 0 && records[i].n > 1) envp[ne++] = records[i].f[1];
  for (int k = 0; k < nkept; k++)
    if (dup2(KEEP_BASE + k, kept_dst[k]) < 0) die("dup2 the kept fd to %d", kept_dst[k]);
  const record *ctty = find("ctty");
  if (ctty) {
    need(ctty, 2);
    int fd = (int)number(ctty->f[1], 10);
    if (setsid() < 0) die("setsid");
    if (ioctl(fd, TIOCSCTTY, 0) < 0) die("make fd %d the controlling terminal (TIOCSCTTY)", fd);
  }
  const record *ex = find("exec");
  if (!ex || ex->n < 3) {
    errno = 0;
    die("plan: no exec record");
  }
  execve(ex->f[1], (char **)&ex->f[2], envp);
  die("execve %s (in the jail)", ex->f[1]);
}

static pid_t child;

// The signals the supervisor and the init pass on to their child (see the header, step 4).
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGCONT};
#define NFORWARDED (sizeof forwarded / sizeof forwarded[0])

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

// Forks; the child runs `body` (which must not return); this process forwards the stop signals
// to it and returns its status as an exit code (128 + signal when a signal ended it). Signals are
// blocked from before the fork until the handlers are set, so none is lost on the way.
static int supervise(void (*body)(void), int init) {
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    // The child gets its parent's handlers (forward), which would kill pid 0: reset them.
    for (size_t i = 0; i < NFORWARDED; i++) signal(forwarded[i], SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    body();
    _exit(127);
  }
  struct sigaction sa = {0};
  sa.sa_handler = forward;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (size_t i = 0; i < NFORWARDED; i++) sigaction(forwarded[i], &sa, NULL);
  if (init && drop_late) keep_caps(1ULL << CAP_KILL);
  close_kept();
  sigprocmask(SIG_SETMASK, &old, NULL);
  int status;
  for (;;) {
    // As init, other orphans of the namespace are reaped here too; only the child's status counts.
    pid_t p = wait(&status);
    if (p < 0 && errno == EINTR) continue;
    if (p < 0) die("wait");
    if (p == child) break;
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

// The `fd` records (see the header): each inherited <src> moved to KEEP_BASE + i, close-on-exec
// (the VMM gets it at <dst> by dup2 in exec_vmm, which clears the flag), and the `log` file opened
// and moved above them. main() has closed every fd from KEEP_BASE up, so those places are free.
static void keep_fds(void) {
  const record *lg = find("log");
  if (lg && lg->n >= 2) {
    log_fd = open(lg->f[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (log_fd < 0) die("open the log %s", lg->f[1]);
  }
  for (int i = 0; i < nrecords; i++) {
    const record *r = &records[i];
    if (strcmp(r->f[0], "fd") != 0) continue;
    need(r, 3);
    int src = (int)number(r->f[1], 10), dst = (int)number(r->f[2], 10);
    errno = 0;
    if (nkept == MAX_KEPT) die("plan: more than %d fd records", MAX_KEPT);
    if (src < 3 || src >= KEEP_BASE || dst < 3 || dst >= KEEP_BASE) die("plan: fd %d %d: both must be 3 to %d", src, dst, KEEP_BASE - 1);
    if (src == 3) die("plan: fd 3 is the plan itself");
    for (int k = 0; k < nkept; k++)
      if (kept_dst[k] == dst) die("plan: two fd records for the VMM's fd %d", dst);
    if (fcntl(src, F_DUPFD_CLOEXEC, KEEP_BASE + nkept) != KEEP_BASE + nkept) die("keep the inherited fd %d (is it open?)", src);
    kept_dst[nkept++] = dst;
  }
  if (log_fd >= 0) {
    // Just above the kept ones, out of reach of main()'s close of the fds below KEEP_BASE.
    int moved = fcntl(log_fd, F_DUPFD_CLOEXEC, KEEP_BASE + nkept);
    if (moved < 0) die("move the log's fd");
    close(log_fd);
    log_fd = moved;
  }
}

// The supervisor and the init hold the kept fds only to hand them down: after their fork, they let go.
static void close_kept(void) {
  for (int k = 0; k < nkept; k++) close(KEEP_BASE + k);
}

int main(void) {
  // 1. The plan, then no inherited descriptor but stdin, stdout and stderr.
  read_plan();
  // From KEEP_BASE up first, so what keep_fds() moves there lands exactly at KEEP_BASE + i; then
  // everything below it, the kept fds' old places and the plan's fd 3 included.
  if (syscall(SYS_close_range, (unsigned)KEEP_BASE, ~0U, 0U) < 0) die("close_range(%d, ~0)", KEEP_BASE);
  keep_fds();
  if (syscall(SYS_close_range, 3U, (unsigned)KEEP_BASE - 1, 0U) < 0) die("close_range(3, %d)", KEEP_BASE - 1);
  const record *root = find("root");
  const record *ids = find("ids");
  errno = 0;
  if (!root || root->n < 2) die("plan: no root record");
  if (!ids || ids->n < 3) die("plan: no ids record");
  jail_root = root->f[1];
  jail_uid = (uid_t)number(ids->f[1], 10);
  jail_gid = (gid_t)number(ids->f[2], 10);
  drop_late = find("drop-late") != NULL;
  // The environment the VMM gets is only the plan's env records (execve's envp); none of ours.
  clearenv();

  // The idmapped binds' user namespaces, while /proc still names our children (vmm-jail-idmap.c).
  for (int i = 0; i < nrecords; i++) {
    record *r = &records[i];
    if (strcmp(r->f[0], "bind") == 0 && r->n >= 7 && strcmp(r->f[4], "idmap") == 0)
      r->userns = jail_idmap_userns((unsigned)number(r->f[5], 10), (unsigned)number(r->f[6], 10), jail_uid, jail_gid);
  }

  // 2. Limits and cgroups, inherited by the child.
  for (int i = 0; i < nrecords; i++) {
    if (strcmp(records[i].f[0], "rlimit") == 0) set_rlimit(&records[i]);
    else if (strcmp(records[i].f[0], "cgroup") == 0) write_file(records[i].f[1], "0");
  }
  // 3. The network namespace.
  const record *netns = find("netns");
  if (netns) {
    int fd = open(netns->f[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open the network namespace %s", netns->f[1]);
    if (setns(fd, CLONE_NEWNET) < 0) die("setns %s", netns->f[1]);
    close(fd);
  }
  // 4. New pid, IPC and UTS namespaces; the next child is their pid 1.
  if (unshare(CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS) < 0) die("unshare(CLONE_NEWPID|CLONE_NEWIPC|CLONE_NEWUTS)");
  // Our parent (`vmm jail`) going away takes the jail with it; a detached jail outlives its caller.
  if (!find("detached")) prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  return supervise(enter_jail, 0);
}
