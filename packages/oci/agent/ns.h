// The guest's namespaces as the container sees them: its network (net.c, from the 'C' records
// that packages/oci/src/network.ts makes) and the container's PID namespace (pidns.c).
#ifndef VMM_AGENT_NS_H
#define VMM_AGENT_NS_H

#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>

#include "agent.h"

#define NET_MAX_ADDRS 16
#define NET_MAX_ROUTES 32

// An IPv4 or IPv6 address (AF_INET: the first 4 bytes).
struct net_ip {
  int family;
  unsigned char bytes[16];
};

struct net_route {
  struct net_ip dest, gateway;
  int prefix, has_gateway;
};

// 'n' "NAME MAC MTU", 'i' "ADDRESS/PREFIX" (each), 'r' "DEST/PREFIX GATEWAY|-" (each, in order).
struct net_config {
  int has_link;
  char name[IFNAMSIZ];
  unsigned char mac[6];
  int mtu;
  int naddrs, nroutes;
  struct net_ip addr[NET_MAX_ADDRS];
  int prefix[NET_MAX_ADDRS];
  struct net_route route[NET_MAX_ROUTES];
};

// The records of a 'C' message that concern the network; -1 with a message naming the bad record.
int parse_net(const struct spec *s, struct net_config *c, char *err, size_t errlen);
// lo up, then (with an 'n' record) the interface with that MAC renamed, its MTU, up, its addresses
// and routes. 0, or -1 with a message.
int setup_network(const struct spec *s, char *err, size_t errlen);

struct proc_mount {
  char target[4096];
  unsigned long flags;
};
// The proc mounts under NEWROOT in a /proc/self/mountinfo text, in mount order (at most max).
int proc_mounts(const char *mountinfo, struct proc_mount *out, int max);
// In the agent, before forking the container's init: its children go to a new PID namespace.
int enter_pid_namespace(char *err, size_t errlen);
// In that init (PID 1 of the new namespace), before chroot: the container's proc mounts are
// made again, so /proc shows the container's namespace. 0, or -1 with a message.
int remount_proc(char *err, size_t errlen);

#endif
