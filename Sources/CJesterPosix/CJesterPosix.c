// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "CJesterPosix.h"

#include <errno.h>
#include <linux/bpf.h>
#include <linux/futex.h>
#include <string.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

int cjester_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }

int cjester_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0); }

int cjester_set_process_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

ssize_t cjester_send_with_fd(int socket, const void *bytes, size_t length, int fd) {
    struct iovec iov = {.iov_base = (void *)bytes, .iov_len = length};
    union {
        char buffer[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        message.msg_control = control.buffer;
        message.msg_controllen = sizeof(control.buffer);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(header), &fd, sizeof(int));
    }
    return sendmsg(socket, &message, MSG_NOSIGNAL);
}

ssize_t cjester_receive_with_fd(int socket, void *bytes, size_t capacity, int *received_fd) {
    struct iovec iov = {.iov_base = bytes, .iov_len = capacity};
    union {
        char buffer[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer,
                             .msg_controllen = sizeof(control.buffer)};
    *received_fd = -1;
    ssize_t result = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
    if (result < 0) return result;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
            memcpy(received_fd, CMSG_DATA(header), sizeof(int));
        }
    }
    return result;
}

int cjester_peer_credentials(int socket, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}

int cjester_memfd_create(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}

int32_t cjester_atomic_add32(int32_t *word, int32_t value) {
    return __atomic_add_fetch(word, value, __ATOMIC_SEQ_CST);
}

int32_t cjester_atomic_load32(const int32_t *word) {
    return __atomic_load_n(word, __ATOMIC_SEQ_CST);
}

void cjester_atomic_store32(int32_t *word, int32_t value) {
    __atomic_store_n(word, value, __ATOMIC_SEQ_CST);
}

int64_t cjester_atomic_load64(const int64_t *word) {
    return __atomic_load_n(word, __ATOMIC_SEQ_CST);
}

int64_t cjester_atomic_add64(int64_t *word, int64_t value) {
    return __atomic_add_fetch(word, value, __ATOMIC_SEQ_CST);
}

void cjester_atomic_store64(int64_t *word, int64_t value) {
    __atomic_store_n(word, value, __ATOMIC_SEQ_CST);
}

int cjester_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    if (timeout_ns < 0) timeout_ns = 0;
    // A relative timeout (FUTEX_WAIT measures it on CLOCK_MONOTONIC).
    struct timespec timeout = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    return (int)syscall(SYS_futex, word, FUTEX_WAIT, expected, &timeout, NULL, 0);
}

int cjester_futex_wake(uint32_t *word, int count) {
    return (int)syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}

// x86-64's baseline lacks cmpxchg16b (a few 2004-era CPUs had none), so without this attribute the compiler
// calls libatomic, whose 16-byte fallback is a lock table private to each process: useless across processes.
// Every x86-64 CPU since 2006 has it (x86-64-v2 requires it).
#if defined(__x86_64__)
__attribute__((target("cx16")))
#endif
int cjester_atomic_cas128(void *pair, uint64_t expected_first, uint64_t expected_second, uint64_t desired_first,
                          uint64_t desired_second) {
    // The first word is the low half (little-endian targets only, as asserted below).
    _Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the pair layout assumes little-endian");
    unsigned __int128 expected = ((unsigned __int128)expected_second << 64) | expected_first;
    unsigned __int128 desired = ((unsigned __int128)desired_second << 64) | desired_first;
    return __sync_bool_compare_and_swap((unsigned __int128 *)pair, expected, desired) ? 1 : 0;
}

// MARK: bpf(2), for steering QUIC datagrams by connection ID (Docs/http3-design.md)

static int cjester_bpf(int command, union bpf_attr *attributes) {
    return (int)syscall(SYS_bpf, command, attributes, sizeof(*attributes));
}

int cjester_bpf_map_create(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max_entries) {
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.map_type = type;
    attributes.key_size = key_size;
    attributes.value_size = value_size;
    attributes.max_entries = max_entries;
    return cjester_bpf(BPF_MAP_CREATE, &attributes);
}

int cjester_bpf_map_update(int map, const void *key, const void *value) {
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.map_fd = (uint32_t)map;
    attributes.key = (uint64_t)(uintptr_t)key;
    attributes.value = (uint64_t)(uintptr_t)value;
    attributes.flags = BPF_ANY;
    return cjester_bpf(BPF_MAP_UPDATE_ELEM, &attributes);
}

int cjester_bpf_map_delete(int map, const void *key) {
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.map_fd = (uint32_t)map;
    attributes.key = (uint64_t)(uintptr_t)key;
    return cjester_bpf(BPF_MAP_DELETE_ELEM, &attributes);
}

int cjester_bpf_load_reuseport_program(const void *instructions, uint32_t count, char *log, uint32_t log_size) {
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.prog_type = BPF_PROG_TYPE_SK_REUSEPORT;
    attributes.expected_attach_type = BPF_SK_REUSEPORT_SELECT;
    attributes.insns = (uint64_t)(uintptr_t)instructions;
    attributes.insn_cnt = count;
    attributes.license = (uint64_t)(uintptr_t)"Apache-2.0";
    if (log != NULL && log_size > 0) {
        log[0] = 0;
        attributes.log_buf = (uint64_t)(uintptr_t)log;
        attributes.log_size = log_size;
        attributes.log_level = 1;
    }
    int fd = cjester_bpf(BPF_PROG_LOAD, &attributes);
    if (fd < 0 && log != NULL && log_size > 0 && errno == ENOSPC) {
        // The log did not fit; load again without it so the caller sees the real outcome.
        attributes.log_buf = 0;
        attributes.log_size = 0;
        attributes.log_level = 0;
        fd = cjester_bpf(BPF_PROG_LOAD, &attributes);
    }
    return fd;
}

int cjester_attach_reuseport_program(int socket, int program) {
    return setsockopt(socket, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &program, sizeof(program));
}

int cjester_spawn_close_from(void *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, from);
}
