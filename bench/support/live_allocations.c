// SPDX-License-Identifier: Apache-2.0
// LD_PRELOAD library for bench/idle_breakdown.py: counts the live heap allocations of a process per usable size
// and, while armed, keeps the backtrace of every allocation made that is still live, so the memory an idle
// connection holds can be attributed to the objects holding it.
//
//   SIGRTMIN+5  writes /tmp/live-<pid> ("size count" per line) and /tmp/trace-<pid> (the backtraces)
//   SIGRTMIN+6  arms or disarms the backtraces
//
// Benchmark-only, never part of the product; slow while armed (a linear search per free).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LARGEST_SIZE 4096  // larger allocations share the last counter
#define MAX_TRACES 4096
#define TRACE_DEPTH 16

static atomic_long live_by_size[LARGEST_SIZE + 1];

static struct {
    void *pointer;  // NULL once freed
    int size;
    int depth;
    void *frames[TRACE_DEPTH];
} traces[MAX_TRACES];
static int trace_count;
static volatile sig_atomic_t armed;
static __thread int tracing;  // backtrace() may allocate

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void (*real_free)(void *);

// dlsym itself may call calloc before real_calloc is known: served from here.
static char bootstrap[8192];
static size_t bootstrap_used;

static int is_bootstrap(void *pointer) {
    return (char *)pointer >= bootstrap && (char *)pointer < bootstrap + sizeof bootstrap;
}

static void count(void *pointer, long delta) {
    if (pointer == NULL) return;
    size_t size = malloc_usable_size(pointer);
    atomic_fetch_add(&live_by_size[size > LARGEST_SIZE ? LARGEST_SIZE : size], delta);
}

static void remember(void *pointer) {
    if (!armed || pointer == NULL || tracing || trace_count >= MAX_TRACES) return;
    tracing = 1;
    int slot = trace_count++;
    traces[slot].pointer = pointer;
    traces[slot].size = (int)malloc_usable_size(pointer);
    traces[slot].depth = backtrace(traces[slot].frames, TRACE_DEPTH);
    tracing = 0;
}

static void forget(void *pointer) {
    for (int slot = 0; slot < trace_count; slot++) {
        if (traces[slot].pointer == pointer) traces[slot].pointer = NULL;
    }
}

static void report(int signal) {
    (void)signal;
    char path[64], line[64];
    snprintf(path, sizeof path, "/tmp/live-%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    for (int size = 0; size <= LARGEST_SIZE; size++) {
        long live = atomic_load(&live_by_size[size]);
        if (live != 0) (void)!write(fd, line, (size_t)snprintf(line, sizeof line, "%d %ld\n", size, live));
    }
    close(fd);
    snprintf(path, sizeof path, "/tmp/trace-%d", (int)getpid());
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    for (int slot = 0; slot < trace_count; slot++) {
        if (traces[slot].pointer == NULL) continue;
        (void)!write(fd, line, (size_t)snprintf(line, sizeof line, "== size %d\n", traces[slot].size));
        backtrace_symbols_fd(traces[slot].frames, traces[slot].depth, fd);
    }
    close(fd);
}

static void toggle(int signal) {
    (void)signal;
    armed = !armed;
}

__attribute__((constructor)) static void setup(void) {
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_free = dlsym(RTLD_NEXT, "free");
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_flags = SA_RESTART;
    action.sa_handler = report;
    sigaction(SIGRTMIN + 5, &action, NULL);
    action.sa_handler = toggle;
    sigaction(SIGRTMIN + 6, &action, NULL);
}

void *malloc(size_t size) {
    if (!real_malloc) setup();
    void *pointer = real_malloc(size);
    count(pointer, 1);
    remember(pointer);
    return pointer;
}

void *calloc(size_t items, size_t size) {
    if (!real_calloc) {
        size_t bytes = (items * size + 15) & ~(size_t)15;
        if (bootstrap_used + bytes > sizeof bootstrap) return NULL;
        void *pointer = bootstrap + bootstrap_used;
        bootstrap_used += bytes;
        return pointer;  // already zero
    }
    void *pointer = real_calloc(items, size);
    count(pointer, 1);
    remember(pointer);
    return pointer;
}

void *realloc(void *old, size_t size) {
    if (!real_realloc) setup();
    if (old != NULL && !is_bootstrap(old)) {
        count(old, -1);
        if (armed) forget(old);
    }
    void *pointer = real_realloc(old, size);
    count(pointer, 1);
    remember(pointer);
    return pointer;
}

int posix_memalign(void **pointer, size_t alignment, size_t size) {
    if (!real_posix_memalign) setup();
    int result = real_posix_memalign(pointer, alignment, size);
    if (result == 0) {
        count(*pointer, 1);
        remember(*pointer);
    }
    return result;
}

void free(void *pointer) {
    if (pointer == NULL || is_bootstrap(pointer)) return;
    if (!real_free) real_free = dlsym(RTLD_NEXT, "free");
    count(pointer, -1);
    if (trace_count > 0) forget(pointer);
    real_free(pointer);
}
