// The guest's network, as the container's network namespace on the host has it (the host side,
// packages/oci/src/network.ts, read it there and connected the namespace's interface to our
// virtio-net device with tc): the guest's interface is the one whose MAC is the veth's (the VMM
// gave the device that MAC); it takes the veth's name, MTU, IPv4 and IPv6 addresses, and the
// routes, in order. lo is brought up in every case, as runc does in a new network namespace. Links by
// ioctl (netdevice(7): SIOCSIFNAME, SIOCSIFMTU, SIOCSIFFLAGS), addresses and routes by rtnetlink
// (rtnetlink(7): RTM_NEWADDR, RTM_NEWROUTE), whose replies carry the kernel's errno.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ns.h"

// An address of either family: IPv6 when it has a colon.
static int parse_ip(const char *text, struct net_ip *a) {
  memset(a, 0, sizeof *a);
  a->family = strchr(text, ':') ? AF_INET6 : AF_INET;
  return inet_pton(a->family, text, a->bytes) == 1 ? 0 : -1;
}

static int parse_cidr(const char *text, struct net_ip *a, int *prefix) {
  char ip[INET6_ADDRSTRLEN];
  const char *slash = strchr(text, '/');
  if (!slash || (size_t)(slash - text) >= sizeof ip) return -1;
  memcpy(ip, text, slash - text);
  ip[slash - text] = 0;
  char *end;
  long p = strtol(slash + 1, &end, 10);
  if (parse_ip(ip, a) < 0 || *end || end == slash + 1 || p < 0 || p > (a->family == AF_INET6 ? 128 : 32)) return -1;
  *prefix = (int)p;
  return 0;
}

static int ip_len(const struct net_ip *a) { return a->family == AF_INET6 ? 16 : 4; }

int parse_net(const struct spec *s, struct net_config *c, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < s->n; i++) {
    const struct record *r = &s->r[i];
    if (r->key == 'n') {
      unsigned m[6];
      char name[64], mac[64];
      int mtu;
      if (sscanf(r->value, "%63s %63s %d", name, mac, &mtu) != 3 || strlen(name) >= IFNAMSIZ ||
          sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6 ||
          mtu < 68 || mtu > 65535)
        goto bad;
      c->has_link = 1;
      memcpy(c->name, name, strlen(name) + 1);
      for (int k = 0; k < 6; k++) c->mac[k] = (unsigned char)m[k];
      c->mtu = mtu;
    } else if (r->key == 'i') {
      if (c->naddrs == NET_MAX_ADDRS) {
        snprintf(err, errlen, "network: more than %d addresses", NET_MAX_ADDRS);
        return -1;
      }
      if (parse_cidr(r->value, &c->addr[c->naddrs], &c->prefix[c->naddrs]) < 0) goto bad;
      c->naddrs++;
    } else if (r->key == 'r') {
      if (c->nroutes == NET_MAX_ROUTES) {
        snprintf(err, errlen, "network: more than %d routes", NET_MAX_ROUTES);
        return -1;
      }
      struct net_route *rt = &c->route[c->nroutes];
      char dest[64], gw[64];
      if (sscanf(r->value, "%63s %63s", dest, gw) != 2 || parse_cidr(dest, &rt->dest, &rt->prefix) < 0) goto bad;
      rt->has_gateway = strcmp(gw, "-") != 0;
      if (rt->has_gateway && (parse_ip(gw, &rt->gateway) < 0 || rt->gateway.family != rt->dest.family)) goto bad;
      c->nroutes++;
    } else continue;
    continue;
  bad:
    snprintf(err, errlen, "network: malformed '%c' record \"%s\"", r->key, r->value);
    return -1;
  }
  if (!c->has_link && (c->naddrs || c->nroutes)) {
    snprintf(err, errlen, "network: addresses or routes without an interface ('n' record)");
    return -1;
  }
  return 0;
}

static int set_up(int sock, const char *name) {
  struct ifreq ifr = {0};
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) return -1;
  ifr.ifr_flags |= IFF_UP;
  return ioctl(sock, SIOCSIFFLAGS, &ifr);
}

// The name of the interface whose MAC is mac, into name; -1 when there is none.
static int find_by_mac(int sock, const unsigned char mac[6], char name[IFNAMSIZ]) {
  struct if_nameindex *all = if_nameindex();
  if (!all) return -1;
  int found = -1;
  for (struct if_nameindex *i = all; i->if_index && found < 0; i++) {
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", i->if_name);
    if (ioctl(sock, SIOCGIFHWADDR, &ifr) == 0 && memcmp(ifr.ifr_hwaddr.sa_data, mac, 6) == 0) {
      snprintf(name, IFNAMSIZ, "%s", i->if_name);
      found = 0;
    }
  }
  if_freenameindex(all);
  return found;
}

struct nl_req {
  struct nlmsghdr h;
  union {
    struct ifaddrmsg a;
    struct rtmsg r;
  } m;
  char attrs[128];
};

static void add_attr(struct nl_req *q, unsigned short type, const void *data, unsigned short len) {
  struct rtattr *a = (struct rtattr *)((char *)&q->h + NLMSG_ALIGN(q->h.nlmsg_len));
  a->rta_type = type;
  a->rta_len = RTA_LENGTH(len);
  memcpy(RTA_DATA(a), data, len);
  q->h.nlmsg_len = NLMSG_ALIGN(q->h.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

// Sends one request and returns the kernel's answer: 0, or a negative errno.
static int nl_talk(int fd, struct nl_req *q) {
  static unsigned seq;
  q->h.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  q->h.nlmsg_seq = ++seq;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(fd, q, q->h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return -errno;
  char buf[8192];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    int len = (int)n;
    for (struct nlmsghdr *r = (struct nlmsghdr *)buf; NLMSG_OK(r, len); r = NLMSG_NEXT(r, len))
      if (r->nlmsg_seq == q->h.nlmsg_seq && r->nlmsg_type == NLMSG_ERROR)
        return ((struct nlmsgerr *)NLMSG_DATA(r))->error;
  }
}

static int add_address(int nl, int ifindex, const struct net_ip *a, int prefix) {
  struct nl_req q = {0};
  q.h.nlmsg_len = NLMSG_LENGTH(sizeof q.m.a);
  q.h.nlmsg_type = RTM_NEWADDR;
  q.m.a = (struct ifaddrmsg){.ifa_family = a->family, .ifa_prefixlen = prefix, .ifa_index = ifindex};
  q.m.a.ifa_scope = RT_SCOPE_UNIVERSE;
  // The namespace checked this address already (its veth holds it): no duplicate detection delay.
  if (a->family == AF_INET6) q.m.a.ifa_flags = IFA_F_NODAD;
  add_attr(&q, IFA_LOCAL, a->bytes, ip_len(a));
  add_attr(&q, IFA_ADDRESS, a->bytes, ip_len(a));
  if (a->family == AF_INET && prefix < 31) {
    struct in_addr b;
    memcpy(&b, a->bytes, 4);
    b.s_addr |= htonl(prefix ? 0xffffffffu >> prefix : 0xffffffffu);
    add_attr(&q, IFA_BROADCAST, &b, sizeof b);
  }
  return nl_talk(nl, &q);
}

static int add_route(int nl, int ifindex, const struct net_route *rt) {
  struct nl_req q = {0};
  q.h.nlmsg_len = NLMSG_LENGTH(sizeof q.m.r);
  q.h.nlmsg_type = RTM_NEWROUTE;
  q.m.r = (struct rtmsg){.rtm_family = rt->dest.family, .rtm_dst_len = rt->prefix, .rtm_table = RT_TABLE_MAIN};
  q.m.r.rtm_protocol = RTPROT_BOOT;
  q.m.r.rtm_scope = rt->has_gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
  q.m.r.rtm_type = RTN_UNICAST;
  if (rt->prefix > 0) add_attr(&q, RTA_DST, rt->dest.bytes, ip_len(&rt->dest));
  if (rt->has_gateway) add_attr(&q, RTA_GATEWAY, rt->gateway.bytes, ip_len(&rt->gateway));
  add_attr(&q, RTA_OIF, &ifindex, sizeof ifindex);
  return nl_talk(nl, &q);
}

int setup_network(const struct spec *s, char *err, size_t errlen) {
  struct net_config c;
  if (parse_net(s, &c, err, errlen) < 0) return -1;
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0 || set_up(sock, "lo") < 0) {
    snprintf(err, errlen, "network: bringing lo up: %s", strerror(errno));
    if (sock >= 0) close(sock);
    return -1;
  }
  int r = 0, nl = -1;
  const char *what = "";
  char name[IFNAMSIZ], text[INET6_ADDRSTRLEN] = "";
  if (!c.has_link) goto done;
  r = -1;
  what = "finding the interface";
  if (find_by_mac(sock, c.mac, name) < 0) {
    errno = ENODEV;
    goto done;
  }
  struct ifreq ifr = {0};
  if (strcmp(name, c.name) != 0) {
    what = "renaming the interface";
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    snprintf(ifr.ifr_newname, IFNAMSIZ, "%s", c.name);
    if (ioctl(sock, SIOCSIFNAME, &ifr) < 0) goto done;
  }
  what = "setting the MTU";
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", c.name);
  ifr.ifr_mtu = c.mtu;
  if (ioctl(sock, SIOCSIFMTU, &ifr) < 0) goto done;
  what = "bringing the interface up";
  if (set_up(sock, c.name) < 0) goto done;
  int ifindex = (int)if_nametoindex(c.name);
  what = "opening rtnetlink";
  nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (nl < 0) goto done;
  for (int i = 0; i < c.naddrs; i++) {
    int e = add_address(nl, ifindex, &c.addr[i], c.prefix[i]);
    if (e < 0) {
      inet_ntop(c.addr[i].family, c.addr[i].bytes, text, sizeof text);
      what = "adding the address";
      errno = -e;
      goto done;
    }
  }
  for (int i = 0; i < c.nroutes; i++) {
    int e = add_route(nl, ifindex, &c.route[i]);
    if (e < 0) {
      inet_ntop(c.route[i].dest.family, c.route[i].dest.bytes, text, sizeof text);
      what = "adding the route to";
      errno = -e;
      goto done;
    }
  }
  r = 0;
done:
  if (r < 0)
    snprintf(err, errlen, "network: %s %s%s(%s, MAC %02x:%02x:%02x:%02x:%02x:%02x): %s", what, text, *text ? " " : "",
             c.name, c.mac[0], c.mac[1], c.mac[2], c.mac[3], c.mac[4], c.mac[5], strerror(errno));
  if (nl >= 0) close(nl);
  close(sock);
  return r;
}
