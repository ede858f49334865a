/*
 * The sandbox's init: PID 1 of the pid namespace.
 *
 * The app must not be PID 1: the kernel drops signals to a PID 1 that has no
 * handler for them (a Python app would ignore SIGTERM), and PID 1 inherits
 * every orphan, which someone has to reap. So, as bubblewrap does, PID 1
 * forks the app and then only reaps children and forwards signals to it.
 * When the app exits, init writes the app's wait status to the status pipe
 * and exits with a shell-style code (the exit code, or 128 + signal); the
 * kernel then kills whatever else is left in the namespace.
 *
 * Init gets no seccomp filter (it must wait, kill, write), but has lost every
 * capability and set no_new_privs before it started the app (which inherits
 * both), is not dumpable (its memory is a copy of
 * the parent's, so /proc/1/mem and /proc/1/environ must stay closed to the
 * app) and keeps no fd but the status pipe.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sbx_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

static void init_signal_set(sigset_t *set)
{
    sigemptyset(set);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaddset(set, forwarded[i]);
    sigaddset(set, SIGCHLD);
}

/* Blocked signals are queued even for PID 1 (which would drop them if they
 * were unblocked with no handler), and sigwaitinfo takes them one by one. */
int sbx_init_block_signals(void)
{
    sigset_t set;
    init_signal_set(&set);
    return sigprocmask(SIG_SETMASK, &set, NULL);
}

static unsigned long parse_ulong(const char *s)
{
    unsigned long v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (unsigned long)(*s++ - '0');
    return v;
}

/* /proc/1/cmdline is world-readable whatever the dumpable flag says, and ours
 * is the parent's command line: overwrite it with our name, and zero the
 * environment strings. Fields 48-51 of /proc/self/stat: arg_start arg_end
 * env_start env_end. */
static void scrub_parent_strings(void)
{
    static const char name[] = "aerogrid-init";
    prctl(PR_SET_NAME, name, 0, 0, 0);

    char buf[2048];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = '\0';

    char *p = strrchr(buf, ')'); /* the command name may contain spaces */
    if (p == NULL) return;
    unsigned long v[4] = { 0, 0, 0, 0 };
    for (int field = 2; *p != '\0'; p++) {
        if (*p != ' ') continue;
        field++;
        if (field >= 48 && field <= 51) v[field - 48] = parse_ulong(p + 1);
    }
    if (v[0] && v[1] > v[0]) {
        memset((void *)v[0], 0, v[1] - v[0]);
        if (v[1] - v[0] >= sizeof name) memcpy((void *)v[0], name, sizeof name);
    }
    if (v[2] && v[3] > v[2]) memset((void *)v[2], 0, v[3] - v[2]);
}

int sbx_exit_code_for(int wstatus)
{
    if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
    return 255;
}

static _Noreturn void finish(int status_fd, int wstatus)
{
    ssize_t n = write(status_fd, &wstatus, sizeof wstatus);
    (void)n;
    _exit(sbx_exit_code_for(wstatus));
}

_Noreturn void sbx_init_main(const struct sbx_ctx *ctx, pid_t app)
{
    sigset_t set;
    init_signal_set(&set);

    scrub_parent_strings();
    /* Every fd of the parent, the error pipe included: its EOF must come
     * from the app's execve alone. */
    sbx_close_all_but(ctx->status_fd, ctx->max_fd);

    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&set, &info);
        if (sig < 0) continue; /* EINTR */
        if (sig != SIGCHLD) {
            kill(app, sig);
            continue;
        }
        /* One SIGCHLD may stand for several children; orphans included. */
        for (;;) {
            int wstatus;
            pid_t pid = waitpid(-1, &wstatus, WNOHANG);
            if (pid <= 0) break;
            if (pid == app) finish(ctx->status_fd, wstatus);
        }
    }
}
