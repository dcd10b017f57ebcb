// vmm-jail's idmapped binds (mount_setattr(2), MOUNT_ATTR_IDMAP; Linux 5.12+). The default jail
// (drop-late) runs its VMM as a uid of its own, made for the run, and the directories the VMM
// writes in at run time (its sockets' directories: a snapshot saved there, a disk hot-plugged from
// there, the sockets it unlinks at the end) belong to someone else, usually root. Rather than
// chown the caller's directories, each such bind is idmapped: the directory's owner (uid and gid
// on disk) is shown to the jailed VMM as its own uid and gid, and what the VMM makes there is
// written on disk as that owner. So the VMM acts as the directory's owner in that directory only,
// and a file it leaves there (a snapshot) belongs to the caller, as without a jail.
//
// The mapping is a user namespace's (user_namespaces(7): a uid_map line "<inside> <outside> 1";
// for an idmapped mount the on-disk id is the inside one and the caller's the outside one):
// "<owner> <jail uid> 1" and "<jail uid> 0 1". The second is for the VMM before its drop: it makes
// its sockets and log files there as root, and a caller whose id the mapping lacks gets EOVERFLOW
// (mount_setattr(2)); what root makes is written as the jail's uid, which the VMM after its drop
// sees as root's (so it may still unlink its sockets), and `vmm run` gives such files back to the
// directory's owner when the VMM has ended (packages/cli/src/jail/machine.ts). The
// namespace is made by a child that unshare(CLONE_NEWUSER)s and waits while this process, root in
// the host's user namespace (CAP_SETUID/CAP_SETGID there), writes its maps and opens its
// /proc/<pid>/ns/user; this runs in the supervisor, before the jail's pid namespace, so /proc
// names the child. The mount: open_tree(2) OPEN_TREE_CLONE of the source, mount_setattr(2) with
// the namespace's fd, move_mount(2) onto the jail's mount point. Raw syscall(2)s, so the helper
// needs no glibc newer than 2.34 (the constants come from the headers at build time).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm-jail.h"

static void write_map(pid_t pid, const char *which, unsigned owner, unsigned jail) {
  char path[64], text[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, which);
  snprintf(text, sizeof text, "%u %u 1\n%u 0 1\n", owner, jail, jail);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) jail_die("open %s", path);
  // One write(2) holds the whole map (user_namespaces(7)).
  if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) jail_die("write \"%s\" to %s", text, path);
  close(fd);
}

int jail_idmap_userns(unsigned fsuid, unsigned fsgid, unsigned uid, unsigned gid) {
  int ready[2], go[2];
  if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0) jail_die("pipe");
  pid_t child = fork();
  if (child < 0) jail_die("fork");
  if (child == 0) {
    char b = 0;
    close(ready[0]);
    close(go[1]); // else its own copy would keep the read below from ever seeing EOF
    if (unshare(CLONE_NEWUSER) < 0) _exit(1);
    if (write(ready[1], &b, 1) != 1) _exit(1);
    (void)!read(go[0], &b, 1); // until the parent has what it needs: EOF
    _exit(0);
  }
  close(ready[1]);
  close(go[0]);
  char b;
  if (read(ready[0], &b, 1) != 1) {
    errno = 0;
    jail_die("the child making the idmap's user namespace failed (unshare(CLONE_NEWUSER))");
  }
  write_map(child, "uid_map", fsuid, uid);
  write_map(child, "gid_map", fsgid, gid);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) jail_die("open %s", path);
  close(go[1]);
  close(ready[0]);
  waitpid(child, NULL, 0);
  return ns;
}

void jail_idmap_bind(const char *src, const char *dst, const char *shown, int userns) {
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) jail_die("open_tree %s", src);
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  attr.userns_fd = (unsigned)userns;
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
    jail_die("idmap the bind of %s (mount_setattr MOUNT_ATTR_IDMAP; its filesystem may not support idmapped mounts: run with --no-jail, or use vmm jail with a --uid that owns it)", shown);
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
    jail_die("move_mount %s to %s", src, shown);
  close(tree);
}
