// SPDX-License-Identifier: Apache-2.0
// text_pages.so: an LD_PRELOAD library that records where a process enters the code of the main program, for
// bench/symbol_order.py.
//
// Why: an idle worker's largest share of memory is the binary's code, and the kernel maps it in 64 KiB
// fault-around windows, so code run at start-up that lies scattered over the 20 MiB text costs whole windows.
// Ordering the functions a process runs together at link time (lld's --symbol-ordering-file) needs the list of
// those functions; sampling profilers miss the ones run once.
//
// How: before the program's own initialisers run, its executable segment is made inaccessible. A fault opens the
// faulting page and closes the page opened two faults before, so at most two pages are open at any time (two, so
// an instruction that straddles a page boundary can run) and every jump into a closed page faults again. Each
// distinct faulting address is recorded once: every function called from another page, every page first run.
// A function only ever called from the same pair of open pages is missed; laid out elsewhere by the next order,
// it is found by the next run (bench/symbol_order.py says to run twice). Slow (a fault at each page change), so
// for a profiling run only; nothing else about the run changes. The two open pages are the process's, not a
// thread's: threads running code at once take turns, and many threads each running an instruction that
// straddles a page boundary could in principle keep taking each other's pages; a worker's few threads do not.
//
// Set TEXT_PAGES_DIR to a directory; each process (the master, every worker: posix_spawn keeps the environment)
// appends its addresses to TEXT_PAGES_DIR/entries.PID as hexadecimal link-time addresses, one a line, in the
// order first seen. Without the variable the library does nothing. Run with SWIFT_BACKTRACE=enable=no: Swift's
// crash handler would replace this SIGSEGV handler. Build: cc -O2 -shared -fPIC -o text_pages.so text_pages.c
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define SEEN_SLOTS (1u << 20) // distinct entry addresses; a worker start records some tens of thousands

static uintptr_t page_size, text_start, text_end, load_bias;
static int output = -1;
static _Atomic uintptr_t seen[SEEN_SLOTS];
static uintptr_t open_pages[2];
static unsigned next_open;
static atomic_flag open_pages_lock = ATOMIC_FLAG_INIT;

static int find_main_text(struct dl_phdr_info *info, size_t size, void *unused) {
    (void)size; (void)unused;
    if (info->dlpi_name[0] != '\0') return 0; // the main program is the one without a name
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[i];
        if (header->p_type != PT_LOAD || !(header->p_flags & PF_X)) continue;
        uintptr_t start = info->dlpi_addr + header->p_vaddr;
        text_start = start & ~(page_size - 1);
        text_end = (start + header->p_memsz + page_size - 1) & ~(page_size - 1);
        load_bias = info->dlpi_addr;
        return 1;
    }
    return 1;
}

/// True the first time `address` is offered (a lock-free open-addressing set; safe in a signal handler).
static int first_sighting(uintptr_t address) {
    uintptr_t slot = (address * 0x9E3779B97F4A7C15u) >> 44;
    for (unsigned probe = 0; probe < SEEN_SLOTS; probe++) {
        _Atomic uintptr_t *cell = &seen[(slot + probe) & (SEEN_SLOTS - 1)];
        uintptr_t expected = 0;
        if (atomic_compare_exchange_strong(cell, &expected, address)) return 1;
        if (expected == address) return 0;
    }
    return 0; // full: stop recording rather than loop
}

/// `address - load_bias` in hexadecimal and a newline (snprintf is not async-signal-safe).
static size_t format_line(uintptr_t offset, char line[20]) {
    char digits[16];
    size_t count = 0;
    do {
        digits[count++] = "0123456789abcdef"[offset & 15];
        offset >>= 4;
    } while (offset != 0);
    for (size_t i = 0; i < count; i++) line[i] = digits[count - 1 - i];
    line[count] = '\n';
    return count + 1;
}

static void on_fault(int signal_number, siginfo_t *info, void *context) {
    (void)context;
    int saved_errno = errno;
    uintptr_t address = (uintptr_t)info->si_addr;
    if (address < text_start || address >= text_end || info->si_code != SEGV_ACCERR) {
        // Not a page this library closed (a real crash, or a write to code): let it happen as it would have.
        struct sigaction fallback = {.sa_handler = SIG_DFL};
        sigaction(signal_number, &fallback, NULL);
        errno = saved_errno;
        return;
    }
    uintptr_t page = address & ~(page_size - 1);
    while (atomic_flag_test_and_set_explicit(&open_pages_lock, memory_order_acquire)) {}
    uintptr_t closing = open_pages[next_open];
    open_pages[next_open] = page;
    next_open ^= 1;
    if (closing != 0 && closing != page && closing != open_pages[next_open])
        mprotect((void *)closing, page_size, PROT_NONE);
    mprotect((void *)page, page_size, PROT_READ | PROT_EXEC);
    atomic_flag_clear_explicit(&open_pages_lock, memory_order_release);
    if (first_sighting(address)) {
        char line[20];
        (void)!write(output, line, format_line(address - load_bias, line));
    }
    errno = saved_errno;
}

__attribute__((constructor)) static void start_recording(void) {
    const char *directory = getenv("TEXT_PAGES_DIR");
    if (directory == NULL) return;
    page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
    dl_iterate_phdr(find_main_text, NULL);
    if (text_end == 0) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/entries.%d", directory, (int)getpid());
    output = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (output < 0) return;
    // Every other signal waits while the handler holds its lock: a handler in the program's code would fault
    // into this one and spin on the lock it holds.
    struct sigaction action = {.sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_NODEFER};
    sigfillset(&action.sa_mask);
    sigaction(SIGSEGV, &action, NULL);
    mprotect((void *)text_start, text_end - text_start, PROT_NONE);
}
