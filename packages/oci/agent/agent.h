// The guest agent: /init of the container guest. See agent.c for the design.
#ifndef VMM_AGENT_H
#define VMM_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

#define NEWROOT "/newroot"

// One record of a spec: key and bytes (not NUL-terminated in the frame; copied with a NUL here).
struct record {
  char key;
  char *value;
  uint32_t len;
};

struct spec {
  struct record *r;
  size_t n;
};

int parse_spec(const uint8_t *p, uint32_t len, struct spec *out);
void free_spec(struct spec *s);
const char *spec_get(const struct spec *s, char key);

// setup.c: the container's root and mounts ('C'). Returns 0, or -1 with a message in err.
int setup_container(const struct spec *s, char *err, size_t errlen);
void agent_log(const char *fmt, ...);

// spawn.c: a process of the container, stopped before execve until released when `wait` is set.
struct child {
  pid_t pid;
  int in;      // stdin pipe (write end) or the pty master
  int out;     // stdout pipe (read end) or the pty master
  int err;     // stderr pipe (read end), -1 with a terminal
  int go;      // write end of the start pipe, -1 once released
  int status;  // read end of the CLOEXEC status pipe, -1 once the program runs
  int terminal;
};
// boot.c: the host's wall clock and entropy ('B'). Returns 0, or -1 with a message in err.
int apply_boot(const uint8_t *p, uint32_t len, char *err, size_t errlen);

int spawn_process(const struct spec *s, struct child *c, char *err, size_t errlen);
// Lets a waiting child run its program; 0 when execve succeeded, else -1 with the message.
int release_process(struct child *c, char *err, size_t errlen);

#endif
