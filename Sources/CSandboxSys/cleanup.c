/*
 * The launcher's detached clean-up: what is left once the app's outcome is
 * known (the init's exit, the cgroup's removal) is done by a helper, so the
 * launcher can report and exit at once, as bubblewrap's outer process does.
 *
 * The helper is cloned with CLONE_VM: it shares the launcher's memory, so
 * the clone copies no page tables, and the launcher's exit only drops its
 * reference to the address space (the helper's exit tears it down, off the
 * caller's path). Sharing memory with a process that goes on running (the
 * launcher's exit handlers) is safe only if the helper touches nothing of
 * it: its stack and data are static buffers of this file, filled before the
 * clone, and its system calls are made without the C library (whose
 * wrappers would write errno, in the launcher's thread-local storage).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sbx_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* No stack protector in what the helper runs: a canary is read through the
 * thread pointer, and the helper's is the caller's thread's, whose storage
 * may be gone by then. */
#if defined(__has_attribute)
#if __has_attribute(no_stack_protector)
#define SBX_NO_STACK_PROTECTOR __attribute__((no_stack_protector))
#endif
#endif
#ifndef SBX_NO_STACK_PROTECTOR
#define SBX_NO_STACK_PROTECTOR
#endif

#if defined(__x86_64__)
#define SBX_CLEANER_SHARES_MEMORY 1
SBX_NO_STACK_PROTECTOR __attribute__((always_inline))
static inline long cleaner_syscall(long n, long a, long b, long c, long d, long e)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
#define SBX_CLEANER_SHARES_MEMORY 1
SBX_NO_STACK_PROTECTOR __attribute__((always_inline))
static inline long cleaner_syscall(long n, long a, long b, long c, long d, long e)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4)
                     : "memory");
    return x0;
}
#else
/* Elsewhere the helper gets a copy of the memory instead: errno is its own. */
#define SBX_CLEANER_SHARES_MEMORY 0
static long cleaner_syscall(long n, long a, long b, long c, long d, long e)
{
    long r = syscall(n, a, b, c, d, e);
    return r < 0 ? -errno : r;
}
#endif

#define CLEANER_PATH_MAX 512

static struct {
    int started;
    int pidfd;          /* the sandbox's init */
    int hold_fd;        /* read end of the caller's pipe, or -1 */
    unsigned max_fd;    /* for closing without close_range */
    int n;
    char dirs[SBX_MAX_CGROUP_FDS][CLEANER_PATH_MAX];
} cleaner;

static char cleaner_stack[64 * 1024] __attribute__((aligned(16)));

/* Every fd but the two it keeps. close_range (Linux 5.9) in three ranges;
 * before it, one close per possible fd. */
SBX_NO_STACK_PROTECTOR
static void cleaner_close_others(int a, int b)
{
    if (a > b) { int t = a; a = b; b = t; }
    long r = 0;
    if (a > 0) r = cleaner_syscall(SYS_close_range, 0, a - 1, 0, 0, 0);
    if (r == 0 && b > a + 1) r = cleaner_syscall(SYS_close_range, a + 1, b - 1, 0, 0, 0);
    if (r == 0) r = cleaner_syscall(SYS_close_range, (unsigned)b + 1, ~0U, 0, 0, 0);
    if (r == 0) return;
    for (unsigned fd = 0; fd <= cleaner.max_fd; fd++)
        if ((int)fd != a && (int)fd != b) cleaner_syscall(SYS_close, fd, 0, 0, 0, 0);
}

/* Blocks until `fd` polls one of `events` (ppoll: no poll on aarch64). */
SBX_NO_STACK_PROTECTOR
static void cleaner_wait(int fd, short events)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = events };
        long r = cleaner_syscall(SYS_ppoll, (long)&p, 1, 0, 0, 0);
        if (r == 1 && (p.revents & (events | POLLHUP | POLLERR | POLLNVAL))) return;
        if (r < 0 && r != -EINTR) return;
    }
}

SBX_NO_STACK_PROTECTOR
static int cleaner_main(void *unused)
{
    (void)unused;
    unsigned long all_signals = ~0UL;
    /* Its own session, no signals, no fds but the two it waits on: a Ctrl-C
     * for the launcher's terminal, or a caller waiting for EOF on its output,
     * never waits for or reaches the helper. */
    cleaner_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all_signals, 0, sizeof all_signals, 0);
    cleaner_syscall(SYS_setsid, 0, 0, 0, 0, 0);
    cleaner_close_others(cleaner.pidfd, cleaner.hold_fd >= 0 ? cleaner.hold_fd : cleaner.pidfd);
    cleaner_syscall(SYS_chdir, (long)"/", 0, 0, 0, 0);

    /* The init gone: the kernel killed and reaped the rest of its pid
     * namespace first, so the cgroup holds nothing now. Then the caller done
     * with it (its last reading, the OOM counter): its end of the pipe closed,
     * by itself or by its exit. */
    cleaner_wait(cleaner.pidfd, POLLIN);
    if (cleaner.hold_fd >= 0) cleaner_wait(cleaner.hold_fd, POLLHUP);

    /* EBUSY would be a process still on its way out: a few retries, then the
     * group is left as it is. */
    struct timespec pause = { 0, 1000000 };
    for (int i = 0; i < cleaner.n; i++) {
        for (int attempt = 0; attempt < 50; attempt++) {
            long r = cleaner_syscall(SYS_unlinkat, AT_FDCWD, (long)cleaner.dirs[i], AT_REMOVEDIR, 0, 0);
            if (r != -EBUSY) break;
            cleaner_syscall(SYS_nanosleep, (long)&pause, 0, 0, 0, 0);
        }
    }
    return 0;
}

int sbx_detach_cleanup(int pidfd, int hold_fd, const char *const *dirs, int n)
{
    if (pidfd < 0 || n < 0 || n > SBX_MAX_CGROUP_FDS || (n > 0 && dirs == NULL)) {
        errno = EINVAL;
        return -1;
    }
    if (cleaner.started) {
        errno = EBUSY;
        return -1;
    }
    for (int i = 0; i < n; i++) {
        size_t len = strlen(dirs[i]);
        if (len >= CLEANER_PATH_MAX) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(cleaner.dirs[i], dirs[i], len + 1);
    }
    struct rlimit nofile = { 1024, 1024 };
    getrlimit(RLIMIT_NOFILE, &nofile);
    cleaner.max_fd = nofile.rlim_cur > 65536 ? 65536 : (unsigned)nofile.rlim_cur;
    cleaner.n = n;
    cleaner.pidfd = pidfd;
    cleaner.hold_fd = hold_fd;
    cleaner.started = 1;
    int flags = SIGCHLD | (SBX_CLEANER_SHARES_MEMORY ? CLONE_VM : 0);
    if (clone(cleaner_main, cleaner_stack + sizeof cleaner_stack, flags, NULL) < 0) {
        cleaner.started = 0;
        return -1;
    }
    return 0;
}
