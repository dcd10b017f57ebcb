// Runs the agent's own parsers (compiled from packages/oci/agent with its main renamed) on stdin,
// for agent-parsers.test.ts: `net` reads a 'C' payload (records) and prints what parse_net made
// of it; `proc` reads a mountinfo text and prints the proc mounts under /newroot with their flags.
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../agent/ns.h"

static char *slurp(size_t *len) {
  size_t cap = 1 << 16;
  char *b = malloc(cap);
  *len = 0;
  size_t n;
  while ((n = fread(b + *len, 1, cap - *len - 1, stdin)) > 0) {
    *len += n;
    if (cap - *len < 2) b = realloc(b, cap *= 2);
  }
  b[*len] = 0;
  return b;
}

int main(int argc, char **argv) {
  size_t len;
  char *in = slurp(&len);
  if (argc > 1 && strcmp(argv[1], "net") == 0) {
    struct spec s;
    if (parse_spec((const uint8_t *)in, (uint32_t)len, &s) < 0) return puts("error malformed spec"), 0;
    struct net_config c;
    char err[1024], a[INET6_ADDRSTRLEN], g[INET6_ADDRSTRLEN];
    if (parse_net(&s, &c, err, sizeof err) < 0) return printf("error %s\n", err), 0;
    if (c.has_link)
      printf("link %s %02x:%02x:%02x:%02x:%02x:%02x %d\n", c.name, c.mac[0], c.mac[1], c.mac[2], c.mac[3], c.mac[4],
             c.mac[5], c.mtu);
    for (int i = 0; i < c.naddrs; i++)
      printf("addr %s/%d\n", inet_ntop(c.addr[i].family, c.addr[i].bytes, a, sizeof a), c.prefix[i]);
    for (int i = 0; i < c.nroutes; i++) {
      struct net_route *r = &c.route[i];
      printf("route %s/%d %s\n", inet_ntop(r->dest.family, r->dest.bytes, a, sizeof a), r->prefix,
             r->has_gateway ? inet_ntop(r->gateway.family, r->gateway.bytes, g, sizeof g) : "link");
    }
    free_spec(&s);
  } else if (argc > 1 && strcmp(argv[1], "proc") == 0) {
    struct proc_mount m[16];
    int n = proc_mounts(in, m, 16);
    for (int i = 0; i < n; i++) printf("%s %lu\n", m[i].target, m[i].flags);
  } else return fprintf(stderr, "usage: harness net|proc < input\n"), 2;
  free(in);
  return 0;
}
