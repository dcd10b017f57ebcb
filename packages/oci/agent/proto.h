// The agent's wire format, shared in meaning with packages/oci/src/protocol.ts (the authority).
// Every message on a vsock stream is a frame: u32 little-endian payload length, u8 type, payload.
// Specs ('C' container setup, 'S' process) are a run of records: u8 key, u32 LE length, bytes.
#ifndef VMM_AGENT_PROTO_H
#define VMM_AGENT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER 5
#define FRAME_MAX (1u << 20)

// host -> agent
#define MSG_SETUP 'C'   // container setup: hostname, root, mounts (once, first session)
#define MSG_SPAWN 'S'   // a process: args, env, cwd, user, rlimits, terminal, wait-for-start
#define MSG_GO 'G'      // start: the process waiting since 'S' (with key 'w') runs its program
#define MSG_STDIN 'I'   // bytes for the process's stdin (or pty)
#define MSG_STDIN_EOF 'i'
#define MSG_SIGNAL 'K'  // u32 signal number
#define MSG_WINSIZE 'W' // u16 rows, u16 cols
#define MSG_BOOT 'B'    // u64 seconds, u32 nanoseconds (host wall clock), 32+ random bytes (boot.c)
#define MSG_TEMPLATE 'T' // the guest is being saved as a template: the agent closes this session
#define BOOT_HEADER 12
#define BOOT_MIN_ENTROPY 32
// agent -> host
#define MSG_HELLO 'H'   // the agent is up (payload: the kernel release)
#define MSG_ACK 'A'     // the request worked (payload: the guest pid for 'S'/'G', else empty)
#define MSG_ERROR 'R'   // it did not: the message, as runc would word it
#define MSG_STDOUT 'O'
#define MSG_STDERR 'E'
#define MSG_EXIT 'X'    // u32 status: the exit code, or 128+N for death by signal N

#endif
