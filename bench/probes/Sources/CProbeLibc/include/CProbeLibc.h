// What Swift's Glibc module leaves out: epoll, accept4 and memmem (GNU extensions).
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <sys/socket.h>
#include <stddef.h>
#include <string.h>

/// accept4 without the peer's address (its transparent-union argument does not import into Swift).
static inline int probe_accept(int listener) { return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }
