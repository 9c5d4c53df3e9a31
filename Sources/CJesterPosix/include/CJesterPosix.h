// SPDX-License-Identifier: Apache-2.0
// libc entry points Swift cannot call directly: variadic functions (prctl) and function-like macros (CMSG_*).
// Each wrapper is a plain C function with fixed arguments; nothing here has policy.
#pragma once

#include <stdint.h>
#include <sys/types.h>

/// prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0): exec can never grant privileges again (setuid binaries, file caps).
int cjester_set_no_new_privs(void);

/// prctl(PR_SET_PDEATHSIG, signal): the kernel sends `signal` to this process when its parent thread exits.
int cjester_set_parent_death_signal(int signal);

/// prctl(PR_SET_NAME, name): the short process name shown by ps/top (at most 15 bytes are kept).
int cjester_set_process_name(const char *name);

/// Sends `length` bytes and one file descriptor over a Unix socket (SCM_RIGHTS). Returns sendmsg's result.
ssize_t cjester_send_with_fd(int socket, const void *bytes, size_t length, int fd);

/// Receives up to `capacity` bytes and at most one file descriptor (SCM_RIGHTS) into `*received_fd`
/// (-1 when none came). Returns recvmsg's result.
ssize_t cjester_receive_with_fd(int socket, void *bytes, size_t capacity, int *received_fd);

/// The peer of a connected Unix socket (SO_PEERCRED). Returns 0 on success, -1 with errno set otherwise.
int cjester_peer_credentials(int socket, pid_t *pid, uid_t *uid, gid_t *gid);

/// memfd_create(name, MFD_CLOEXEC): an anonymous file for memory shared with child processes by descriptor.
int cjester_memfd_create(const char *name);

/// Sequentially consistent atomics on 32-bit words in shared memory (other processes use the same words):
/// add returns the value after the addition.
int32_t cjester_atomic_add32(int32_t *word, int32_t value);
int32_t cjester_atomic_load32(const int32_t *word);
void cjester_atomic_store32(int32_t *word, int32_t value);

/// Sequentially consistent atomics on 64-bit words in shared memory (the rate-limit table's counters and slots).
int64_t cjester_atomic_load64(const int64_t *word);
int64_t cjester_atomic_add64(int64_t *word, int64_t value);
void cjester_atomic_store64(int64_t *word, int64_t value);

/// futex(FUTEX_WAIT) on a 32-bit word of shared memory (not FUTEX_PRIVATE: other processes wake it): sleeps while
/// `*word == expected`, at most `timeout_ns` nanoseconds. Returns 0 when woken, -1 with errno set otherwise
/// (EAGAIN: the word had already changed; ETIMEDOUT; EINTR).
int cjester_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns);

/// futex(FUTEX_WAKE): wakes up to `count` processes waiting on `word`. Returns how many were woken, or -1.
int cjester_futex_wake(uint32_t *word, int count);

/// Compare-and-swap of 16 bytes at a 16-byte aligned address, seen as two 64-bit words {first, second}: stores
/// the desired pair and returns 1 when both words held the expected pair, returns 0 otherwise. Lock-free
/// (cmpxchg16b on x86-64, a paired exclusive or CASP on arm64), so a process killed at any instant can leave no
/// lock behind in memory other processes share.
int cjester_atomic_cas128(void *pair, uint64_t expected_first, uint64_t expected_second, uint64_t desired_first,
                          uint64_t desired_second);

/// bpf(BPF_MAP_CREATE) for a map of `type` (a BPF_MAP_TYPE_* value) with fixed-size keys and values. Returns the
/// map's fd (close-on-exec), or -1 with errno set (EPERM without CAP_BPF/CAP_NET_ADMIN, EINVAL on an old kernel).
int cjester_bpf_map_create(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max_entries);

/// bpf(BPF_MAP_UPDATE_ELEM): `*value` at `*key` (for socket maps, the value is a socket's fd). 0, or -1 with errno.
int cjester_bpf_map_update(int map, const void *key, const void *value);

/// bpf(BPF_MAP_DELETE_ELEM). 0, or -1 with errno (ENOENT when the key was not there).
int cjester_bpf_map_delete(int map, const void *key);

/// bpf(BPF_PROG_LOAD) of a BPF_PROG_TYPE_SK_REUSEPORT program of `count` 8-byte instructions, with the kernel's
/// verifier log written into `log` (NUL-terminated) when loading fails. Returns the program's fd, or -1 with errno.
int cjester_bpf_load_reuseport_program(const void *instructions, uint32_t count, char *log, uint32_t log_size);

/// setsockopt(SO_ATTACH_REUSEPORT_EBPF): `program` chooses the socket of `socket`'s SO_REUSEPORT group for each
/// datagram or connection. 0, or -1 with errno.
int cjester_attach_reuseport_program(int socket, int program);

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34): the child closes every descriptor from `from` on, so it
/// gets exactly the ones the actions before placed, whatever the parent forgot to mark close-on-exec (SwiftNIO
/// accepts connections without SOCK_CLOEXEC). 0, or an error number.
int cjester_spawn_close_from(void *actions, int from);
