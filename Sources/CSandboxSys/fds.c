/*
 * File descriptors. The child starts with a copy of every fd of the parent
 * (a supervisor holds sockets of other tenants and clients); the app keeps
 * 0-2 and the IPC socket at 3, nothing else. Async-signal-safe only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sbx_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* Moves fd out of 0..4 (the range being filled) if it is in it. */
static int lift(int *fd)
{
    if (*fd < 0 || *fd > 4) return 0;
    int moved = fcntl(*fd, F_DUPFD_CLOEXEC, 5);
    if (moved < 0) return -1;
    *fd = moved;
    return 0;
}

/* stdin, stdout, stderr -> 0, 1, 2; ipc -> 3; the error pipe -> 4 (CLOEXEC,
 * so the app never sees it and its closing at execve tells the parent the
 * exec happened). All sources are first lifted above 4, so no dup2 can
 * clobber a source still to be placed; dup2 clears CLOEXEC on 0-3. */
int sbx_arrange_app_fds(const struct sbx_ctx *ctx, int *report_fd)
{
    const struct sbx_config *cfg = ctx->cfg;
    int src[4] = {
        cfg->stdin_fd >= 0 ? cfg->stdin_fd : ctx->null_fd,
        cfg->stdout_fd >= 0 ? cfg->stdout_fd : ctx->null_fd,
        cfg->stderr_fd >= 0 ? cfg->stderr_fd : ctx->null_fd,
        cfg->ipc_fd,
    };
    int err = *report_fd;

    if (lift(&err) < 0) return -1;
    *report_fd = err;
    for (int i = 0; i < 4; i++)
        if (lift(&src[i]) < 0) return -1;

    for (int i = 0; i < 4; i++) {
        if (src[i] >= 0) {
            if (dup2(src[i], i) < 0) return -1;
        } else if (close(i) < 0 && errno != EBADF) {
            return -1;
        }
    }
    if (dup3(err, 4, O_CLOEXEC) < 0) return -1;
    *report_fd = 4;
    return 0;
}

/* close_range(2) (Linux 5.9); else a loop up to the highest fd the parent
 * could have had open — not a walk of /proc/self/fd, which needs opendir
 * and so malloc. */
int sbx_close_from(unsigned first, unsigned max_fd)
{
    if (syscall(SYS_close_range, first, ~0u, 0) == 0) return 0;
    if (errno != ENOSYS && errno != EINVAL) return -1;
    for (unsigned fd = first; fd <= max_fd; fd++) close((int)fd);
    return 0;
}

int sbx_close_all_but(int keep, unsigned max_fd)
{
    if (keep > 0) {
        if (syscall(SYS_close_range, 0u, (unsigned)keep - 1, 0) < 0) {
            if (errno != ENOSYS && errno != EINVAL) return -1;
            for (int fd = 0; fd < keep; fd++) close(fd);
        }
    }
    return sbx_close_from((unsigned)keep + 1, max_fd);
}
