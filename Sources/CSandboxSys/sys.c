/*
 * Thin syscall wrappers: raw ones the child needs (glibc's versions are not
 * safe there), and the ones Swift cannot call (variadic syscall/prctl,
 * functions missing from its Glibc module).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sbx_internal.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define SBX_P_PIDFD 3

/* ---- for the child ------------------------------------------------------- */

/* glibc's setres[ug]id signal every thread it knows of to change them too;
 * in the child those threads are gone and it would wait forever. The raw
 * syscall changes the calling task only, which is all there is here. */
int sbx_raw_setresuid(uid_t uid)
{
    return (int)syscall(SYS_setresuid, uid, uid, uid);
}

int sbx_raw_setresgid(gid_t gid)
{
    return (int)syscall(SYS_setresgid, gid, gid, gid);
}

/* The parent's handlers are code of the parent; until execve resets them a
 * signal would run them here. Ignored signals would even survive execve. */
int sbx_reset_signal_dispositions(void)
{
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)sigaction(sig, &dfl, NULL); /* glibc refuses its own two: fine */
    }
    return 0;
}

/* ---- for Swift ------------------------------------------------------------ */

int sbx_pidfd_open(pid_t pid, unsigned flags)
{
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

int sbx_pidfd_send_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int sbx_waitid_pidfd(int pidfd, int options, int *code, int *status)
{
    siginfo_t info = { 0 };
    int r;
    do r = waitid((idtype_t)SBX_P_PIDFD, (id_t)pidfd, &info, options);
    while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    if (info.si_pid == 0) return 1; /* WNOHANG, still running */
    if (code) *code = info.si_code;
    if (status) *status = info.si_status;
    return 0;
}

int sbx_close_range(unsigned first, unsigned last, unsigned flags)
{
    return (int)syscall(SYS_close_range, first, last, flags);
}

int sbx_unshare(int flags) { return unshare(flags); }
int sbx_setns(int fd, int nstype) { return setns(fd, nstype); }
int sbx_set_pdeathsig(int sig) { return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0); }
int sbx_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
int sbx_set_child_subreaper(int on) { return prctl(PR_SET_CHILD_SUBREAPER, on ? 1UL : 0UL, 0, 0, 0); }
int sbx_set_dumpable(int on) { return prctl(PR_SET_DUMPABLE, on ? 1UL : 0UL, 0, 0, 0); }
int sbx_memfd_create(const char *name, unsigned flags) { return (int)syscall(SYS_memfd_create, name, flags); }

int sbx_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

int sbx_spawn_close_from(posix_spawn_file_actions_t *actions, int from)
{
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

const void *sbx_map_bpf(int fd, size_t size)
{
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

void sbx_unmap_bpf(const void *bpf, size_t size)
{
    if (bpf) munmap((void *)(uintptr_t)bpf, size);
}
