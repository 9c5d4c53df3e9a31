// SPDX-License-Identifier: Apache-2.0
// What Swift's Glibc module leaves out: epoll, accept4, memmem, splice and pipe2 (GNU extensions).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/// accept4 without the peer's address (its transparent-union argument does not import into Swift).
static inline int probe_accept(int listener) { return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

/// Moves up to `length` bytes between a socket and a pipe without copying them through user space.
static inline ssize_t probe_splice(int from, int to, size_t length) {
    return splice(from, NULL, to, NULL, length, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

/// A non-blocking pipe: `ends[0]` reads, `ends[1]` writes.
static inline int probe_pipe(int ends[2]) { return pipe2(ends, O_NONBLOCK | O_CLOEXEC); }
