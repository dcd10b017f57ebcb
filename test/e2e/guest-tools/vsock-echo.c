// vsock-echo <port> <text>: connects AF_VSOCK to the host (CID 2) port <port>, sends "<text>\n",
// half-closes, and copies what comes back to stdout until the host closes. Exit status 0 when the
// connection worked (the test compares the text).
#include "sys.h"

#define AF_VSOCK 40
#define SOCK_STREAM 1
#define SHUT_WR 1
#define VMADDR_CID_HOST 2

struct sockaddr_vm {
  unsigned short svm_family;
  unsigned short svm_reserved1;
  unsigned int svm_port;
  unsigned int svm_cid;
  unsigned char svm_flags;
  unsigned char svm_zero[3];
};

int main(int argc, char **argv) {
  if (argc < 3) {
    out(2, "usage: vsock-echo <port> <text>\n");
    return 2;
  }
  long fd = sys3(SYS_socket, AF_VSOCK, SOCK_STREAM, 0);
  if (fd < 0) die("socket", fd);
  struct sockaddr_vm addr = {0};
  addr.svm_family = AF_VSOCK;
  addr.svm_port = (unsigned int)atou(argv[1]);
  addr.svm_cid = VMADDR_CID_HOST;
  long r = sys3(SYS_connect, fd, &addr, sizeof addr);
  if (r < 0) die("connect", r);
  char line[256];
  size_t n = slen(argv[2]);
  if (n > sizeof line - 1) n = sizeof line - 1;
  for (size_t i = 0; i < n; i++) line[i] = argv[2][i];
  line[n++] = '\n';
  for (size_t done = 0; done < n;) {
    r = sys3(SYS_write, fd, line + done, n - done);
    if (r < 0) die("write", r);
    done += (size_t)r;
  }
  sys3(SYS_shutdown, fd, SHUT_WR, 0);
  char buf[4096];
  for (;;) {
    r = sys3(SYS_read, fd, buf, sizeof buf);
    if (r < 0) die("read", r);
    if (r == 0) break;
    sys3(SYS_write, 1, buf, r);
  }
  sys3(SYS_close, fd, 0, 0);
  return 0;
}
