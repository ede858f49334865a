/*
 * The child path, from clone to execve, top to bottom.
 *
 * Runs in a copy of a possibly multi-threaded parent: only async-signal-safe
 * calls (raw syscalls and the libc wrappers that are nothing more), no malloc,
 * no stdio, no locks, nothing glibc broadcasts to "other threads" (setxid).
 * Every step that fails is reported to the parent as (step, errno, index)
 * through the CLOEXEC error pipe, and the process exits SBX_EXIT_SETUP_FAILED.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sbx_internal.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

_Noreturn void sbx_child_fail(int report_fd, int step, int index, int err)
{
    struct sbx_failure f = { .step = step, .err = err, .index = index,
                             .pid = (int32_t)getpid() };
    /* One record < PIPE_BUF: the write is atomic; nothing to do if it fails. */
    ssize_t n = write(report_fd, &f, sizeof f);
    (void)n;
    _exit(SBX_EXIT_SETUP_FAILED);
}

#define STEP_AT(step, index, call)                                  \
    do {                                                            \
        if ((call) < 0) sbx_child_fail(report_fd, (step), (index), errno); \
    } while (0)
#define STEP(step, call) STEP_AT(step, -1, call)

/* The parent writes one byte once the uid/gid maps are in place.
 * EOF means it died first (it may have died before PDEATHSIG was armed) —
 * which needs our own copy of the write end closed. */
static int wait_for_parent(const struct sbx_ctx *c)
{
    int sync_fd = c->sync_fd;
    char byte;
    for (int i = 0; i < 4; i++) close(c->parent_fds[i]);
    ssize_t n;
    do n = read(sync_fd, &byte, 1); while (n < 0 && errno == EINTR);
    if (n != 1) _exit(SBX_EXIT_SETUP_FAILED); /* nobody left to report to */
    return close(sync_fd);
}

/* True when the parent has died: it holds the only read end of the error
 * pipe until the app has exec'd, and a pipe's write end polls POLLERR once
 * no reader is left. Does not block. */
static int parent_gone(int report_fd)
{
    struct pollfd p = { .fd = report_fd, .events = 0 };
    return poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
}

/* Waits for the parent to have made our cgroup (while we built the file
 * system). It sends one byte, and v1 `tasks` fds when we are to join
 * ourselves: writing "0" moves the calling thread (the whole init: it is
 * single-threaded) without the global lock a cgroup.procs write takes.
 * EOF means the parent gave up, and will kill us. */
static int wait_for_cgroup(const struct sbx_ctx *c)
{
    char go;
    struct iovec iov = { .iov_base = &go, .iov_len = 1 };
    union { char buf[CMSG_SPACE(sizeof(int) * SBX_MAX_CGROUP_FDS)]; struct cmsghdr align; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = control.buf, .msg_controllen = sizeof control.buf };
    ssize_t n;
    do n = recvmsg(c->cgroup_fd, &msg, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
    if (n != 1) { if (n == 0) errno = ECANCELED; return -1; }
    close(c->cgroup_fd);
    int failed = 0;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
            ssize_t w;
            do w = write(fd, "0", 1); while (w < 0 && errno == EINTR);
            if (w != 1 && !failed) failed = errno ? errno : EIO;
            close(fd);
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) failed = EMSGSIZE;
    if (failed) { errno = failed; return -1; }
    return 0;
}

/* Become the one mapped id: creating files in our own tmpfs needs a mapped
 * fsuid. Capabilities in the new namespace are kept (the old uid, the
 * parent's, is not the namespace's root, so no setuid fixup clears them). */
static int become_sandbox_user(const struct sbx_config *cfg)
{
    if (sbx_raw_setresgid(cfg->gid) < 0) return -1;
    return sbx_raw_setresuid(cfg->uid);
}

static int apply_rlimit(const struct sbx_rlimit *r)
{
    struct rlimit rl = {
        .rlim_cur = r->soft == UINT64_MAX ? RLIM_INFINITY : (rlim_t)r->soft,
        .rlim_max = r->hard == UINT64_MAX ? RLIM_INFINITY : (rlim_t)r->hard,
    };
    return setrlimit((__rlimit_resource_t)r->resource, &rl);
}

/* ---- PID 2: the app, from its start to execve. */
struct app_start {
    const struct sbx_ctx *ctx;
    int report_fd;
};

static int app_main(void *arg)
{
    const struct app_start *start = arg;
    const struct sbx_ctx *c = start->ctx;
    const struct sbx_config *cfg = c->cfg;
    int report_fd = start->report_fd;
    sigset_t none;

    STEP(SBX_STEP_APP_SETSID,     setsid());
    STEP(SBX_STEP_FDS,            sbx_arrange_app_fds(c, &report_fd));
    /* Before the rlimits: a lower RLIMIT_NOFILE must not hide fds to close. */
    STEP(SBX_STEP_CLOSE_FDS,      sbx_close_from(5, c->max_fd));
    for (int i = 0; i < cfg->n_rlimits; i++)
        STEP_AT(SBX_STEP_RLIMIT, i, apply_rlimit(&cfg->rlimits[i]));
    sigemptyset(&none);
    STEP(SBX_STEP_UNBLOCK_SIGNALS, sigprocmask(SIG_SETMASK, &none, NULL));
    /* Last: from here on only what the filter allows, and execve must be. */
    STEP(SBX_STEP_SECCOMP,        sbx_load_seccomp(cfg->bpf, cfg->bpf_len));
    execve(cfg->exec_path, cfg->argv, cfg->envp);
    sbx_child_fail(report_fd, SBX_STEP_EXECVE, -1, errno);
}

/* The app runs in the init's memory, on a stack of its own, while the init
 * waits (CLONE_VM | CLONE_VFORK, as posix_spawn does): no page tables are
 * copied for it, and its execve has no copy to tear down. Everything it
 * changes is its own (rlimits, signal mask, fd table, session, filter)
 * except memory: it writes only its stack, and errno, which the init, held
 * until the execve or the exit, does not read from before. */
static char app_stack[64 * 1024] __attribute__((aligned(16)));

static pid_t start_app(const struct sbx_ctx *c, int report_fd)
{
    struct app_start start = { .ctx = c, .report_fd = report_fd };
    return clone(app_main, app_stack + sizeof app_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &start);
}

_Noreturn void sbx_child_main(const struct sbx_ctx *c)
{
    const struct sbx_config *cfg = c->cfg;
    const char *hostname = cfg->hostname ? cfg->hostname : "sandbox";
    int report_fd = c->err_fd;
    pid_t app;

    /* ---- PID 1 of the new pid, mount, net, ipc, uts and user namespaces. */
    STEP(SBX_STEP_PDEATHSIG,      prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0));
    /* Our memory is a copy of the parent's: keep it from /proc/1/{mem,environ}. */
    STEP(SBX_STEP_DUMPABLE,       prctl(PR_SET_DUMPABLE, 0, 0, 0, 0));
    STEP(SBX_STEP_SIGNALS,        sbx_reset_signal_dispositions());
    STEP(SBX_STEP_WAIT_PARENT,    wait_for_parent(c));
    /* The parent kept us off its CPU until now (spawn.c); running elsewhere,
     * we take its affinity back, for the init and the app. Best effort, like
     * the move: a CPU gone offline meanwhile is no reason to fail the launch. */
    if (c->moved_off_cpu) (void)sched_setaffinity(0, sizeof c->cpus, &c->cpus);
    /* Still as the parent's uid: host paths are searched with its rights. */
    int source = -1;
    STEP_AT(SBX_STEP_OPEN_SOURCE, source, sbx_open_mount_sources(c, &source));
    STEP(SBX_STEP_SETID,          become_sandbox_user(cfg));
    /* A change of uid clears the parent-death signal and resets the dumpable
     * flag to the host's suid_dumpable: both again. A parent that died before
     * the signal was armed again shows on the error pipe. */
    STEP(SBX_STEP_PDEATHSIG,      prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0));
    STEP(SBX_STEP_DUMPABLE,       prctl(PR_SET_DUMPABLE, 0, 0, 0, 0));
    if (parent_gone(report_fd)) _exit(SBX_EXIT_SETUP_FAILED); /* nobody left to report to */
    umask(022); /* not the parent's: mount points and the app's files */
    STEP(SBX_STEP_MOUNT_PRIVATE,  mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
    STEP(SBX_STEP_ROOT_TMPFS,     sbx_mount_root_tmpfs(cfg->new_root));
    for (int i = 0; i < cfg->n_mounts; i++)
        STEP_AT(SBX_STEP_MOUNT, i, sbx_mount_one(&cfg->mounts[i], &c->mounts[i]));
    STEP(SBX_STEP_PIVOT_ROOT,     sbx_pivot_root(cfg->new_root));
    STEP(SBX_STEP_UMOUNT_OLD_ROOT, umount2(".", MNT_DETACH));
    STEP(SBX_STEP_ROOT_READONLY,  sbx_remount_root_readonly());
    STEP(SBX_STEP_CHDIR,          chdir(cfg->workdir ? cfg->workdir : "/"));
    STEP(SBX_STEP_HOSTNAME,       sethostname(hostname, strlen(hostname)));
    /* A session of our own: the parent's terminal signals do not reach us. */
    STEP(SBX_STEP_SETSID,         setsid());
    /* Nothing of the app's has run yet: into the cgroup, which then becomes
     * our cgroup namespace's root. */
    STEP(SBX_STEP_WAIT_CGROUP,    wait_for_cgroup(c));
    STEP(SBX_STEP_CGROUP_NS,      unshare(CLONE_NEWCGROUP));
    /* Blocked before the fork so that no SIGCHLD or SIGTERM is lost. */
    STEP(SBX_STEP_SIGNALS,        sbx_init_block_signals());
    /* Every privilege goes now, before the app exists: it inherits all of it
     * (an empty bounding set, locked securebits, no capabilities at all,
     * no_new_privs), and the init keeps none either. */
    STEP(SBX_STEP_CAP_BOUNDING,   sbx_drop_bounding_set());
    /* Needs CAP_SETPCAP, so before capset() empties the sets. */
    STEP(SBX_STEP_SECUREBITS,     sbx_lock_securebits());
    STEP(SBX_STEP_CAP_AMBIENT,    sbx_clear_ambient());
    STEP(SBX_STEP_CAPSET,         sbx_clear_capabilities());
    STEP(SBX_STEP_NO_NEW_PRIVS,   prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    STEP(SBX_STEP_FORK,           app = start_app(c, report_fd));
    sbx_init_main(c, app); /* PID 1 stays the tiny init */
}
