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
// for a profiling run only; nothing else about the run changes.
//
// Set TEXT_PAGES_DIR to a directory; each process (the master, every worker: posix_spawn keeps the environment)
// appends its addresses to TEXT_PAGES_DIR/entries.PID as hexadecimal link-time addresses, one a line, in the
// order first seen. Without the variable the library does nothing. Run with SWIFT_BACKTRACE=enable=no: Swift's
// crash handler would replace this SIGSEGV handler. Build: cc -O2 -shared -fPIC -o text_pages.so text_pages.c
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE ((uintptr_t)4096)
#define SEEN_SLOTS (1u << 20) // distinct entry addresses; a worker start records some tens of thousands

static uintptr_t text_start, text_end, load_bias;
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
        text_start = start & ~(PAGE - 1);
        text_end = (start + header->p_memsz + PAGE - 1) & ~(PAGE - 1);
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

static void on_fault(int signal_number, siginfo_t *info, void *context) {
    (void)context;
    uintptr_t address = (uintptr_t)info->si_addr;
    if (address < text_start || address >= text_end) {
        // A real crash: let it happen as it would have.
        struct sigaction fallback = {.sa_handler = SIG_DFL};
        sigaction(signal_number, &fallback, NULL);
        return;
    }
    uintptr_t page = address & ~(PAGE - 1);
    while (atomic_flag_test_and_set_explicit(&open_pages_lock, memory_order_acquire)) {}
    uintptr_t closing = open_pages[next_open];
    open_pages[next_open] = page;
    next_open ^= 1;
    if (closing != 0 && closing != page && closing != open_pages[next_open])
        mprotect((void *)closing, PAGE, PROT_NONE);
    mprotect((void *)page, PAGE, PROT_READ | PROT_EXEC);
    atomic_flag_clear_explicit(&open_pages_lock, memory_order_release);
    if (first_sighting(address)) {
        char line[24];
        int length = snprintf(line, sizeof line, "%lx\n", (unsigned long)(address - load_bias));
        if (length > 0) (void)!write(output, line, (size_t)length);
    }
}

__attribute__((constructor)) static void start_recording(void) {
    const char *directory = getenv("TEXT_PAGES_DIR");
    if (directory == NULL) return;
    dl_iterate_phdr(find_main_text, NULL);
    if (text_end == 0) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/entries.%d", directory, (int)getpid());
    output = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (output < 0) return;
    struct sigaction action = {.sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_NODEFER};
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, NULL);
    mprotect((void *)text_start, text_end - text_start, PROT_NONE);
}
