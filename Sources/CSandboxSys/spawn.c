/*
 * The parent side: prepare everything the child will read, clone it into its
 * namespaces, write its uid/gid maps, release it; later put it in its cgroups.
 * This runs in the parent and may allocate; the child (child.c) may not.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sbx_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#define SBX_P_PIDFD 3

/* struct clone_args, version 0 (Linux 5.3); linux/sched.h clashes with sched.h. */
struct sbx_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static int fail_at(struct sbx_failure *f, int step, int index, int err)
{
    f->step = step;
    f->err = err;
    f->index = index;
    f->pid = 0;
    errno = err;
    return -1;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void release_prepared(struct sbx_ctx *c)
{
    if (c->mounts) {
        for (int i = 0; i < c->cfg->n_mounts; i++) {
            free(c->mounts[i].target);
        }
        free(c->mounts);
        c->mounts = NULL;
    }
    close_fd(&c->null_fd);
}

/* Mount targets are made below new_root: no ".." may climb out of it. */
static int has_dotdot(const char *path)
{
    for (const char *p = path; (p = strstr(p, "..")) != NULL; p += 2)
        if ((p == path || p[-1] == '/') && (p[2] == '/' || p[2] == '\0')) return 1;
    return 0;
}

static int validate(const struct sbx_config *cfg, struct sbx_failure *f)
{
    if (cfg->exec_path == NULL || cfg->argv == NULL || cfg->envp == NULL ||
        cfg->new_root == NULL || cfg->new_root[0] != '/' ||
        cfg->n_mounts < 0 || cfg->n_mounts > SBX_MAX_MOUNTS ||
        (cfg->n_mounts > 0 && cfg->mounts == NULL) ||
        cfg->n_rlimits < 0 || cfg->n_rlimits > SBX_MAX_RLIMITS ||
        (cfg->n_rlimits > 0 && cfg->rlimits == NULL) ||
        (cfg->bpf != NULL && cfg->bpf_len == 0))
        return fail_at(f, SBX_STEP_CONFIG, -1, EINVAL);
    /* Never host root: a process that breaks out must land on nobody. */
    if (cfg->host_uid == 0 || cfg->host_gid == 0)
        return fail_at(f, SBX_STEP_CONFIG, -1, EPERM);
    for (int i = 0; i < cfg->n_mounts; i++) {
        const struct sbx_mount *m = &cfg->mounts[i];
        if (m->target == NULL || m->target[0] != '/' || has_dotdot(m->target) ||
            ((m->kind == SBX_MOUNT_BIND || m->kind == SBX_MOUNT_SYMLINK) && m->source == NULL) ||
            m->kind < SBX_MOUNT_BIND || m->kind > SBX_MOUNT_SYMLINK)
            return fail_at(f, SBX_STEP_CONFIG, i, EINVAL);
    }
    return 0;
}

/* Everything the child will need but may not allocate: the mount targets
 * under new_root, a /dev/null, the fd limit. Bind sources are opened by the
 * child (a mount from an fd of another mount namespace is refused). */
static int prepare(const struct sbx_config *cfg, struct sbx_ctx *c, struct sbx_failure *f)
{
    size_t root_len = strlen(cfg->new_root);
    while (root_len > 1 && cfg->new_root[root_len - 1] == '/') root_len--;

    c->mounts = calloc((size_t)cfg->n_mounts + 1, sizeof *c->mounts);
    if (c->mounts == NULL) return fail_at(f, SBX_STEP_CONFIG, -1, ENOMEM);
    for (int i = 0; i < cfg->n_mounts; i++) c->mounts[i].source_fd = -1;

    for (int i = 0; i < cfg->n_mounts; i++) {
        const struct sbx_mount *m = &cfg->mounts[i];
        struct sbx_prepared_mount *pm = &c->mounts[i];
        size_t len = root_len + strlen(m->target) + 1;
        if (len >= 4096) return fail_at(f, SBX_STEP_CONFIG, i, ENAMETOOLONG);
        pm->target = malloc(len);
        if (pm->target == NULL) return fail_at(f, SBX_STEP_CONFIG, i, ENOMEM);
        memcpy(pm->target, cfg->new_root, root_len);
        strcpy(pm->target + root_len, m->target);
        pm->root_len = root_len;
    }

    if (cfg->stdin_fd < 0 || cfg->stdout_fd < 0 || cfg->stderr_fd < 0) {
        c->null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (c->null_fd < 0) return fail_at(f, SBX_STEP_CONFIG, -1, errno);
    }

    struct rlimit nofile = { 1024, 1024 };
    getrlimit(RLIMIT_NOFILE, &nofile);
    rlim_t max = nofile.rlim_max > nofile.rlim_cur ? nofile.rlim_max : nofile.rlim_cur;
    c->max_fd = max > (1u << 20) ? (1u << 20) : (unsigned)max;
    return 0;
}

/* All namespaces but the cgroup one, which the child enters once it is in
 * its cgroup (a new cgroup namespace is rooted at the cgroup its creator is
 * in). A pidfd comes with it, race-free. */
static pid_t clone_sandbox(int *pidfd)
{
    uint64_t flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
                     CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD;
    struct sbx_clone_args args = {
        .flags = flags,
        .pidfd = (uint64_t)(uintptr_t)pidfd,
        .exit_signal = SIGCHLD,
    };
    long pid = syscall(SYS_clone3, &args, sizeof args);
    /* Container runtimes' filters often answer ENOSYS to clone3. The legacy
     * call returns the pidfd through parent_tid, its third argument. */
    if (pid < 0 && errno == ENOSYS)
        pid = syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), 0UL, pidfd, 0UL, 0UL);
    return (pid_t)pid;
}

/* The kernel starts a new process on its parent's CPU, and on a small machine
 * leaves it there for milliseconds while the parent runs: the init's file
 * system and the parent's cgroup work would take turns on one CPU while
 * another idles. So the parent moves the child off its own CPU (it may set
 * the affinity of a process it just cloned, which still has its uid) before
 * it releases it, and the child takes the parent's affinity back once
 * released, before anything of the app's inherits it. Not when only one CPU
 * is allowed. */
static void save_affinity(struct sbx_ctx *c)
{
    c->moved_off_cpu = sched_getaffinity(0, sizeof c->cpus, &c->cpus) == 0 && CPU_COUNT(&c->cpus) > 1;
}

static void move_off_this_cpu(const struct sbx_ctx *c, pid_t pid)
{
    int cpu = sched_getcpu();
    if (!c->moved_off_cpu || cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &c->cpus)) return;
    cpu_set_t others = c->cpus;
    CPU_CLR(cpu, &others);
    (void)sched_setaffinity(pid, sizeof others, &others); /* a hint: failure costs only time */
}

static int write_text(int fd, const char *text)
{
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    if (n < 0) return -1;
    if ((size_t)n != len) { errno = EIO; return -1; }
    return 0;
}

static int write_proc(pid_t pid, const char *name, const char *text)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = write_text(fd, text);
    int err = errno;
    close(fd);
    errno = err;
    return r;
}

/* setgroups is denied inside (the kernel requires that of an unprivileged
 * map writer, and it keeps the app from dropping a group that denies it
 * access). So the groups the child inherits are the ones it keeps: clone
 * with none. Credentials are per thread in the kernel; glibc's setgroups
 * would change every thread, the raw syscall changes only this one, just
 * for the clone. Without CAP_SETGID this fails and the caller's own
 * groups go along (an unprivileged user's, which is what it can grant). */
struct saved_groups { gid_t *list; int n; int dropped; };

static void drop_thread_groups(struct saved_groups *g)
{
    g->list = NULL;
    g->dropped = 0;
    g->n = getgroups(0, NULL);
    if (g->n <= 0) return;
    g->list = malloc((size_t)g->n * sizeof *g->list);
    if (g->list == NULL || getgroups(g->n, g->list) != g->n) return;
    if (syscall(SYS_setgroups, 0, NULL) == 0) g->dropped = 1;
}

static void restore_thread_groups(struct saved_groups *g)
{
    if (g->dropped) (void)syscall(SYS_setgroups, (size_t)g->n, g->list);
    free(g->list);
}

int sbx_spawn(const struct sbx_config *cfg, struct sbx_child *child, struct sbx_failure *failure)
{
    struct sbx_failure ignored;
    struct sbx_ctx c = { .cfg = cfg, .sync_fd = -1, .cgroup_fd = -1, .err_fd = -1, .status_fd = -1, .null_fd = -1 };
    int sync_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 }, status_pipe[2] = { -1, -1 };
    int cgroup_socket[2] = { -1, -1 };
    int pidfd = -1;
    pid_t pid = -1;
    char map[64];

    if (failure == NULL) failure = &ignored;
    *failure = (struct sbx_failure){ 0, 0, -1, 0 };
    child->pid = -1;
    child->pidfd = child->errfd = child->statusfd = child->cgroupfd = -1;

    if (validate(cfg, failure) < 0) return -1;
    if (prepare(cfg, &c, failure) < 0) goto fail;
    if (pipe2(sync_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0 ||
        pipe2(status_pipe, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cgroup_socket) < 0) {
        fail_at(failure, SBX_STEP_PIPES, -1, errno);
        goto fail;
    }
    c.parent_fds[0] = sync_pipe[1];
    c.parent_fds[1] = err_pipe[0];
    c.parent_fds[2] = status_pipe[0];
    c.parent_fds[3] = cgroup_socket[0];
    c.sync_fd = sync_pipe[0];
    c.cgroup_fd = cgroup_socket[1];
    c.err_fd = err_pipe[1];
    c.status_fd = status_pipe[1];

    save_affinity(&c);
    /* No signal handler of ours may run in the child before it resets them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    struct saved_groups groups;
    drop_thread_groups(&groups);

    pid = clone_sandbox(&pidfd);
    if (pid == 0) sbx_child_main(&c);
    int clone_err = errno;

    restore_thread_groups(&groups);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close_fd(&sync_pipe[0]);
    close_fd(&err_pipe[1]);
    close_fd(&status_pipe[1]);
    close_fd(&cgroup_socket[1]);
    if (pid < 0) {
        fail_at(failure, SBX_STEP_CLONE, -1, clone_err);
        goto fail;
    }
    move_off_this_cpu(&c, pid);

    if (write_proc(pid, "setgroups", "deny") < 0) {
        fail_at(failure, SBX_STEP_SETGROUPS, -1, errno);
        goto fail;
    }
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)cfg->uid, (unsigned)cfg->host_uid);
    if (write_proc(pid, "uid_map", map) < 0) {
        fail_at(failure, SBX_STEP_UID_MAP, -1, errno);
        goto fail;
    }
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)cfg->gid, (unsigned)cfg->host_gid);
    if (write_proc(pid, "gid_map", map) < 0) {
        fail_at(failure, SBX_STEP_GID_MAP, -1, errno);
        goto fail;
    }
    if (write(sync_pipe[1], "x", 1) != 1) {
        fail_at(failure, SBX_STEP_RELEASE, -1, errno);
        goto fail;
    }
    close_fd(&sync_pipe[1]);
    release_prepared(&c);

    child->pid = pid;
    child->pidfd = pidfd;
    child->errfd = err_pipe[0];
    child->statusfd = status_pipe[0];
    child->cgroupfd = cgroup_socket[0];
    return 0;

fail:;
    int err = errno;
    if (pid > 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR) {}
    }
    close_fd(&pidfd);
    close_fd(&sync_pipe[0]);
    close_fd(&sync_pipe[1]);
    close_fd(&err_pipe[0]);
    close_fd(&err_pipe[1]);
    close_fd(&status_pipe[0]);
    close_fd(&status_pipe[1]);
    close_fd(&cgroup_socket[0]);
    close_fd(&cgroup_socket[1]);
    release_prepared(&c);
    errno = err;
    return -1;
}

/* The init builds its file system while the parent makes the cgroup, so a
 * setup step (a mount, say) can fail and the init exit before it is placed:
 * the parent then sees only EPIPE or ESRCH. The init wrote its failure before
 * it exited, so if the error pipe is already readable, that record is the
 * cause to report. Does not block: a live init leaves the pipe unread. */
static int init_failed_first(struct sbx_child *child, struct sbx_failure *failure)
{
    struct pollfd p = { .fd = child->errfd, .events = POLLIN };
    int ready;
    do ready = poll(&p, 1, 0); while (ready < 0 && errno == EINTR);
    if (ready != 1 || !(p.revents & POLLIN)) return 0;
    struct sbx_failure record;
    ssize_t n;
    do n = read(child->errfd, &record, sizeof record); while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof record) return 0;
    close_fd(&child->errfd);
    *failure = record;
    return 1;
}

int sbx_place_in_cgroup(struct sbx_child *child, const int *fds, int n, int join_self,
                        struct sbx_failure *failure)
{
    struct sbx_failure ignored;
    if (failure == NULL) failure = &ignored;
    *failure = (struct sbx_failure){ 0, 0, -1, 0 };
    if (n < 0 || n > SBX_MAX_CGROUP_FDS || (n > 0 && fds == NULL)) {
        close_fd(&child->cgroupfd);
        return fail_at(failure, SBX_STEP_CONFIG, -1, EINVAL);
    }
    if (!join_self) {
        char pid[16];
        snprintf(pid, sizeof pid, "%d", (int)child->pid);
        for (int i = 0; i < n; i++) {
            if (write_text(fds[i], pid) < 0) {
                int err = errno;
                close_fd(&child->cgroupfd);
                if (init_failed_first(child, failure)) return 1;
                return fail_at(failure, SBX_STEP_CGROUP_JOIN, i, err);
            }
        }
    }
    /* One byte says go; with join_self the `tasks` fds ride along. */
    char go = 'x';
    struct iovec iov = { .iov_base = &go, .iov_len = 1 };
    union { char buf[CMSG_SPACE(sizeof(int) * SBX_MAX_CGROUP_FDS)]; struct cmsghdr align; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (join_self && n > 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)n);
    }
    ssize_t sent;
    do sent = sendmsg(child->cgroupfd, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    int err = errno;
    close_fd(&child->cgroupfd);
    if (sent != 1) {
        if (init_failed_first(child, failure)) return 1;
        return fail_at(failure, SBX_STEP_CGROUP_SEND, -1, sent < 0 ? err : EIO);
    }
    return 0;
}

int sbx_await_exec(struct sbx_child *child, struct sbx_failure *failure)
{
    struct sbx_failure record;
    ssize_t n;
    do n = read(child->errfd, &record, sizeof record);
    while (n < 0 && errno == EINTR);
    int err = errno;
    close_fd(&child->errfd);
    if (n == 0) return 0;
    if (n == (ssize_t)sizeof record) {
        if (failure) *failure = record;
        return 1;
    }
    errno = n < 0 ? err : EIO;
    return -1;
}

int sbx_wait(struct sbx_child *child, int nonblock, struct sbx_exit *out)
{
    siginfo_t info = { 0 };
    int options = WEXITED | (nonblock ? WNOHANG : 0);
    int r;
    do {
        r = child->pidfd >= 0 ? waitid((idtype_t)SBX_P_PIDFD, (id_t)child->pidfd, &info, options)
                              : waitid(P_PID, (id_t)child->pid, &info, options);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    if (info.si_pid == 0) return 1;

    *out = (struct sbx_exit){ 0 };
    out->init_kind = info.si_code == CLD_EXITED ? SBX_EXIT_CODE : SBX_EXIT_SIGNAL;
    out->init_value = info.si_status;

    /* The init is gone, so is the only writer: this read does not block. */
    if (child->statusfd >= 0) (void)sbx_read_app_status(child->statusfd, out);
    close_fd(&child->statusfd);
    close_fd(&child->pidfd);
    return 0;
}

int sbx_read_app_status(int statusfd, struct sbx_exit *out)
{
    int wstatus;
    ssize_t n;
    do n = read(statusfd, &wstatus, sizeof wstatus); while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    if (n != (ssize_t)sizeof wstatus) return 1; /* EOF: the init died without a word */
    out->core_dumped = 0;
    if (WIFEXITED(wstatus)) {
        out->kind = SBX_EXIT_CODE;
        out->value = WEXITSTATUS(wstatus);
    } else if (WIFSIGNALED(wstatus)) {
        out->kind = SBX_EXIT_SIGNAL;
        out->value = WTERMSIG(wstatus);
        out->core_dumped = WCOREDUMP(wstatus) ? 1 : 0;
    } else {
        return 1;
    }
    return 0;
}

void sbx_child_close(struct sbx_child *child)
{
    close_fd(&child->cgroupfd);
    close_fd(&child->pidfd);
    close_fd(&child->errfd);
    close_fd(&child->statusfd);
}

static const char *const step_names[SBX_STEP_COUNT] = {
    [SBX_STEP_NONE] = "none",
    [SBX_STEP_CONFIG] = "config",
    [SBX_STEP_PIPES] = "pipes",
    [SBX_STEP_CLONE] = "clone",
    [SBX_STEP_SETGROUPS] = "setgroups deny",
    [SBX_STEP_UID_MAP] = "uid_map",
    [SBX_STEP_GID_MAP] = "gid_map",
    [SBX_STEP_RELEASE] = "release child",
    [SBX_STEP_CGROUP_JOIN] = "cgroup join",
    [SBX_STEP_CGROUP_SEND] = "hand over the cgroup",
    [SBX_STEP_PDEATHSIG] = "PR_SET_PDEATHSIG",
    [SBX_STEP_DUMPABLE] = "PR_SET_DUMPABLE",
    [SBX_STEP_SIGNALS] = "signals",
    [SBX_STEP_WAIT_PARENT] = "wait for parent",
    [SBX_STEP_OPEN_SOURCE] = "open mount source",
    [SBX_STEP_SETID] = "setresuid/setresgid",
    [SBX_STEP_MOUNT_PRIVATE] = "make mounts private",
    [SBX_STEP_ROOT_TMPFS] = "root tmpfs",
    [SBX_STEP_MOUNT] = "mount",
    [SBX_STEP_PIVOT_ROOT] = "pivot_root",
    [SBX_STEP_UMOUNT_OLD_ROOT] = "detach old root",
    [SBX_STEP_ROOT_READONLY] = "remount root read-only",
    [SBX_STEP_CHDIR] = "chdir",
    [SBX_STEP_HOSTNAME] = "sethostname",
    [SBX_STEP_SETSID] = "setsid",
    [SBX_STEP_WAIT_CGROUP] = "wait for cgroup",
    [SBX_STEP_CGROUP_NS] = "unshare cgroup namespace",
    [SBX_STEP_FORK] = "fork app",
    [SBX_STEP_APP_SETSID] = "app setsid",
    [SBX_STEP_FDS] = "arrange fds",
    [SBX_STEP_CLOSE_FDS] = "close fds",
    [SBX_STEP_RLIMIT] = "setrlimit",
    [SBX_STEP_CAP_BOUNDING] = "drop bounding set",
    [SBX_STEP_SECUREBITS] = "lock securebits",
    [SBX_STEP_CAP_AMBIENT] = "clear ambient capabilities",
    [SBX_STEP_CAPSET] = "capset",
    [SBX_STEP_NO_NEW_PRIVS] = "no_new_privs",
    [SBX_STEP_UNBLOCK_SIGNALS] = "unblock signals",
    [SBX_STEP_SECCOMP] = "seccomp",
    [SBX_STEP_EXECVE] = "execve",
};

const char *sbx_step_name(int step)
{
    if (step < 0 || step >= SBX_STEP_COUNT || step_names[step] == NULL) return "?";
    return step_names[step];
}

char *sbx_format_failure(const struct sbx_failure *f, const struct sbx_config *cfg,
                         char *buf, size_t len)
{
    char where[512];
    const char *name = sbx_step_name(f->step);
    if (f->index >= 0 && cfg != NULL && f->step == SBX_STEP_MOUNT && f->index < cfg->n_mounts)
        snprintf(where, sizeof where, "%s[%d] %s", name, f->index, cfg->mounts[f->index].target);
    else if (f->index >= 0 && cfg != NULL && f->step == SBX_STEP_OPEN_SOURCE && f->index < cfg->n_mounts)
        snprintf(where, sizeof where, "%s[%d] %s", name, f->index, cfg->mounts[f->index].source);
    else if (f->index >= 0)
        snprintf(where, sizeof where, "%s[%d]", name, f->index);
    else
        snprintf(where, sizeof where, "%s", name);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    const char *ename = strerrorname_np(f->err);
#else
    const char *ename = NULL;
#endif
    if (ename)
        snprintf(buf, len, "sandbox setup failed at %s: %s (%s)", where, ename, strerror(f->err));
    else
        snprintf(buf, len, "sandbox setup failed at %s: errno %d (%s)", where, f->err, strerror(f->err));
    return buf;
}

static const struct sbx_mount standard_dev[] = {
    { SBX_MOUNT_TMPFS, SBX_MOUNT_NOEXEC, NULL, "/dev", "mode=0755,size=64k,nr_inodes=64" },
    { SBX_MOUNT_BIND, SBX_MOUNT_DEVICES | SBX_MOUNT_NOEXEC, "/dev/null", "/dev/null", NULL },
    { SBX_MOUNT_BIND, SBX_MOUNT_DEVICES | SBX_MOUNT_NOEXEC, "/dev/zero", "/dev/zero", NULL },
    { SBX_MOUNT_BIND, SBX_MOUNT_DEVICES | SBX_MOUNT_NOEXEC | SBX_MOUNT_OPTIONAL, "/dev/full", "/dev/full", NULL },
    { SBX_MOUNT_BIND, SBX_MOUNT_DEVICES | SBX_MOUNT_NOEXEC, "/dev/random", "/dev/random", NULL },
    { SBX_MOUNT_BIND, SBX_MOUNT_DEVICES | SBX_MOUNT_NOEXEC, "/dev/urandom", "/dev/urandom", NULL },
    { SBX_MOUNT_SYMLINK, 0, "/proc/self/fd", "/dev/fd", NULL },
    { SBX_MOUNT_SYMLINK, 0, "/proc/self/fd/0", "/dev/stdin", NULL },
    { SBX_MOUNT_SYMLINK, 0, "/proc/self/fd/1", "/dev/stdout", NULL },
    { SBX_MOUNT_SYMLINK, 0, "/proc/self/fd/2", "/dev/stderr", NULL },
    { SBX_MOUNT_TMPFS, SBX_MOUNT_NOEXEC, NULL, "/dev/shm", "mode=1777,size=16m" },
};

const struct sbx_mount *sbx_standard_dev_mounts(int *count)
{
    *count = (int)(sizeof standard_dev / sizeof standard_dev[0]);
    return standard_dev;
}
