// What vmm-jail.c and vmm-jail-idmap.c share.
#ifndef VMM_JAIL_H
#define VMM_JAIL_H

/** Prints "vmm-jail: <message>[: strerror(errno)]" and exits with status 1. */
void jail_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/** A user namespace mapping on-disk fsuid/fsgid to the jail's uid/gid (an idmapped mount's), as an fd. */
int jail_idmap_userns(unsigned fsuid, unsigned fsgid, unsigned uid, unsigned gid);

/** Binds `src` at `dst` through the idmap `userns` (nosuid, nodev); `shown` names it in errors. */
void jail_idmap_bind(const char *src, const char *dst, const char *shown, int userns);

#endif
