/*
 * sbx-run: a test driver for CSandboxSys. Builds a seccomp filter with
 * libseccomp, exports it, and runs one command in the sandbox. The real
 * launcher and profiles live in Swift; this exists to exercise the C path.
 *
 *   sbx-run [options] -- /abs/path/to/command [args...]
 *
 *   --ro PATH            read-only bind of a host path at the same path
 *   --bundle DIR         read-only at /app, the working directory
 *   --tmp-size SIZE      size of /tmp (tmpfs), default 16m
 *   --env K=V            add to the (otherwise empty but PATH) environment
 *   --host-uid N         host uid/gid the sandbox maps to (default 65534)
 *   --uid N              uid/gid inside (default 0)
 *   --nofile N --nproc N --fsize BYTES --cpu-seconds N   rlimits (core is 0)
 *   --memory BYTES --pids N  cgroup limits (a leaf per controller under
 *                        aerogrid-test/<pid> in v1, or the v2 tree)
 *   --ipc                a socketpair; the other end's traffic is echoed on stderr
 *   --no-seccomp         no filter (to compare)
 *   --save-bpf FILE      write the compiled filter to FILE and exit
 *   --bpf FILE           use a filter saved so, instead of compiling one
 *                        (what a launcher with a compiled-profile cache does)
 *   --root DIR           host directory the tmpfs root is mounted on
 *   --report             print how it ended and timings on stderr
 *
 * Exit status: the sandbox init's (the app's code, or 128+signal), 125 if
 * setup failed, 124 on a driver error. SIGTERM/SIGINT/SIGHUP to the driver
 * are passed to the sandbox's init, which forwards them to the app.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sandbox_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_ITEMS 128

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sbx-run: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(124);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- the test filter -------------------------------------------------------
 * Default EPERM, native architecture only (anything else kills the process),
 * an allow-list large enough for /bin/sh and python3 -S, and the argument
 * filters the profile format will express. */

static const char *const allowed[] = {
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
    "preadv2", "pwritev2", "open", "openat", "close", "close_range", "stat", "fstat",
    "lstat", "newfstatat", "statx", "poll", "ppoll", "lseek", "mmap", "mprotect",
    "munmap", "mremap", "madvise", "msync", "mincore", "brk", "rt_sigaction",
    "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending",
    "rt_sigtimedwait", "sigaltstack", "access", "faccessat", "faccessat2", "pipe",
    "pipe2", "select", "pselect6", "sched_yield", "dup", "dup2", "dup3", "nanosleep",
    "clock_nanosleep", "getitimer", "setitimer", "alarm", "getpid", "getppid",
    "gettid", "fork", "vfork", "execve", "exit", "exit_group", "wait4", "waitid",
    "kill", "tgkill", "tkill", "uname", "fcntl", "flock", "fsync", "fdatasync",
    "truncate", "ftruncate", "fallocate", "getdents", "getdents64", "getcwd", "chdir",
    "fchdir", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir",
    "unlink", "unlinkat", "link", "linkat", "symlink", "symlinkat", "readlink",
    "readlinkat", "chmod", "fchmod", "fchmodat", "umask", "gettimeofday", "time",
    "getrlimit", "getrusage", "sysinfo", "times", "getuid", "getgid", "geteuid",
    "getegid", "getgroups", "getresuid", "getresgid", "getpgrp", "getpgid",
    "setpgid", "getsid", "setsid", "capget", "arch_prctl", "prctl", "futex",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq",
    "sched_getaffinity", "sched_getparam", "sched_getscheduler",
    "sched_get_priority_max", "sched_get_priority_min", "clock_gettime",
    "clock_getres", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "getrandom",
    "memfd_create", "statfs", "fstatfs", "utime", "utimes", "utimensat",
    "fadvise64", "sendfile", "copy_file_range", "splice", "tee", "getpriority",
    "connect", "accept", "accept4", "sendto", "recvfrom", "sendmsg", "recvmsg",
    "sendmmsg", "recvmmsg", "shutdown", "bind", "listen", "getsockname",
    "getpeername", "setsockopt", "getsockopt", "membarrier", "restart_syscall",
    "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "pidfd_open",
    "pidfd_send_signal", "sched_setaffinity",
};

#define CLONE_NEW_ANY ((scmp_datum_t)(SBX_CLONE_NEWNS | SBX_CLONE_NEWCGROUP | SBX_CLONE_NEWUTS | \
                                      SBX_CLONE_NEWIPC | SBX_CLONE_NEWUSER | SBX_CLONE_NEWPID | \
                                      SBX_CLONE_NEWNET))

static void rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
                 const struct scmp_arg_cmp *cmp)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return; /* not on this architecture */
    int rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
    if (rc < 0) die("seccomp_rule_add %s: %s", name, strerror(-rc));
}

static scmp_filter_ctx build_filter(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (ctx == NULL) die("seccomp_init failed");
    /* libseccomp's default bad-arch action kills only the thread. */
    seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);

    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        rule(ctx, SCMP_ACT_ALLOW, allowed[i], 0, NULL);

    struct scmp_arg_cmp unix_only = SCMP_A0(SCMP_CMP_EQ, AF_UNIX);
    rule(ctx, SCMP_ACT_ALLOW, "socket", 1, &unix_only);
    rule(ctx, SCMP_ACT_ALLOW, "socketpair", 1, &unix_only);

    struct scmp_arg_cmp no_new_ns = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEW_ANY, 0);
    rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &no_new_ns);
    /* clone3 passes its flags in memory the filter cannot read: ENOSYS makes
     * glibc fall back to clone, whose flags it can. */
    rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL);

    /* ioctl: an allow-list of requests, compared on the low 32 bits as the
     * kernel does (it truncates the request to an unsigned int), so TIOCSTI
     * is refused however its high bits are dressed. (libseccomp silently
     * drops a conditional rule for a syscall that has an unconditional one,
     * so "allow ioctl, but deny TIOCSTI" cannot be written as two rules.) */
    static const unsigned long ioctls[] = { TCGETS, TIOCGWINSZ, TIOCGPGRP, FIONREAD,
                                            FIONBIO, FIOCLEX, FIONCLEX };
    for (size_t k = 0; k < sizeof ioctls / sizeof ioctls[0]; k++) {
        struct scmp_arg_cmp req = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, ioctls[k]);
        rule(ctx, SCMP_ACT_ALLOW, "ioctl", 1, &req);
    }

    struct scmp_arg_cmp pers_default = SCMP_A0(SCMP_CMP_EQ, 0);
    struct scmp_arg_cmp pers_query = SCMP_A0(SCMP_CMP_EQ, 0xffffffffu);
    rule(ctx, SCMP_ACT_ALLOW, "personality", 1, &pers_default);
    rule(ctx, SCMP_ACT_ALLOW, "personality", 1, &pers_query);

    struct scmp_arg_cmp self = SCMP_A0(SCMP_CMP_EQ, 0);
    rule(ctx, SCMP_ACT_ALLOW, "prlimit64", 1, &self);
    return ctx;
}

/* ---- cgroups (enough to test joining them) ------------------------------- */

struct cgroups {
    char dirs[8][PATH_MAX];
    int fds[8];
    int n;
};

static void write_file(const char *dir, const char *name, const char *value)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, strlen(value)) < 0) die("write %s: %s", path, strerror(errno));
    close(fd);
}

static void cgroup_leaf(struct cgroups *cg, const char *base, const char *limit_file, const char *limit)
{
    char *dir = cg->dirs[cg->n];
    snprintf(dir, PATH_MAX, "%s/aerogrid-test", base);
    mkdir(dir, 0755);
    snprintf(dir, PATH_MAX, "%s/aerogrid-test/%d", base, (int)getpid());
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) die("mkdir %s: %s", dir, strerror(errno));
    if (limit_file) write_file(dir, limit_file, limit);
    char procs[PATH_MAX];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    cg->fds[cg->n] = open(procs, O_WRONLY | O_CLOEXEC);
    if (cg->fds[cg->n] < 0) die("open %s: %s", procs, strerror(errno));
    cg->n++;
}

static void setup_cgroups(struct cgroups *cg, const char *memory, const char *pids)
{
    cg->n = 0;
    if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) {
        write_file("/sys/fs/cgroup", "cgroup.subtree_control", "+memory +pids");
        cgroup_leaf(cg, "/sys/fs/cgroup", NULL, NULL);
        if (memory) write_file(cg->dirs[0], "memory.max", memory);
        if (pids) write_file(cg->dirs[0], "pids.max", pids);
        return;
    }
    if (memory) cgroup_leaf(cg, "/sys/fs/cgroup/memory", "memory.limit_in_bytes", memory);
    if (pids) cgroup_leaf(cg, "/sys/fs/cgroup/pids", "pids.max", pids);
}

static void remove_cgroups(struct cgroups *cg)
{
    for (int i = 0; i < cg->n; i++) {
        close(cg->fds[i]);
        rmdir(cg->dirs[i]);
    }
}

/* ---- mounts ------------------------------------------------------------------ */

struct mounts {
    struct sbx_mount list[MAX_ITEMS];
    int n;
};

static void add_mount(struct mounts *m, int kind, unsigned flags, const char *source,
                      const char *target, const char *data)
{
    if (m->n == MAX_ITEMS) die("too many mounts");
    m->list[m->n++] = (struct sbx_mount){ kind, flags, source, target, data };
}

/* /lib, /bin… are symlinks into /usr on merged-/usr systems: copy the link. */
static void mirror(struct mounts *m, const char *path)
{
    static char links[16][PATH_MAX];
    static int n_links;
    struct stat st;
    if (lstat(path, &st) < 0) return;
    if (S_ISLNK(st.st_mode) && n_links < 16) {
        ssize_t n = readlink(path, links[n_links], PATH_MAX - 1);
        if (n < 0) return;
        links[n_links][n] = '\0';
        add_mount(m, SBX_MOUNT_SYMLINK, 0, links[n_links++], path, NULL);
    } else {
        add_mount(m, SBX_MOUNT_BIND, SBX_MOUNT_READONLY, path, path, NULL);
    }
}

static uint64_t parse_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    switch (*end) {
    case 'k': case 'K': v <<= 10; break;
    case 'm': case 'M': v <<= 20; break;
    case 'g': case 'G': v <<= 30; break;
    }
    return v;
}

int main(int argc, char **argv)
{
    struct mounts m = { .n = 0 };
    const char *env[MAX_ITEMS + 2] = { "PATH=/usr/local/bin:/usr/bin:/bin" };
    int n_env = 1;
    const char *ro[MAX_ITEMS];
    int n_ro = 0;
    struct sbx_rlimit rl[16];
    int n_rl = 0;
    const char *bundle = NULL, *tmp_size = "16m", *root = "/tmp/.aerogrid-sbx-root";
    const char *memory = NULL, *pids = NULL, *save_bpf = NULL, *load_bpf = NULL;
    unsigned host_id = 65534, inner_id = 0;
    int use_seccomp = 1, report = 0, use_ipc = 0;
    int i;

    rl[n_rl++] = (struct sbx_rlimit){ RLIMIT_CORE, 0, 0 };
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) { i++; break; }
        if (strcmp(a, "--no-seccomp") == 0) { use_seccomp = 0; continue; }
        if (strcmp(a, "--report") == 0) { report = 1; continue; }
        if (strcmp(a, "--ipc") == 0) { use_ipc = 1; continue; }
        if (v == NULL) die("%s needs a value", a);
        i++;
        if (strcmp(a, "--ro") == 0 && n_ro < MAX_ITEMS) ro[n_ro++] = v;
        else if (strcmp(a, "--bundle") == 0) bundle = v;
        else if (strcmp(a, "--tmp-size") == 0) tmp_size = v;
        else if (strcmp(a, "--env") == 0 && n_env < MAX_ITEMS) env[n_env++] = v;
        else if (strcmp(a, "--host-uid") == 0) host_id = (unsigned)atoi(v);
        else if (strcmp(a, "--uid") == 0) inner_id = (unsigned)atoi(v);
        else if (strcmp(a, "--root") == 0) root = v;
        else if (strcmp(a, "--memory") == 0) memory = v;
        else if (strcmp(a, "--pids") == 0) pids = v;
        else if (strcmp(a, "--save-bpf") == 0) save_bpf = v;
        else if (strcmp(a, "--bpf") == 0) load_bpf = v;
        else if (strcmp(a, "--nofile") == 0) rl[n_rl++] = (struct sbx_rlimit){ RLIMIT_NOFILE, parse_size(v), parse_size(v) };
        else if (strcmp(a, "--nproc") == 0) rl[n_rl++] = (struct sbx_rlimit){ RLIMIT_NPROC, parse_size(v), parse_size(v) };
        else if (strcmp(a, "--fsize") == 0) rl[n_rl++] = (struct sbx_rlimit){ RLIMIT_FSIZE, parse_size(v), parse_size(v) };
        else if (strcmp(a, "--cpu-seconds") == 0) rl[n_rl++] = (struct sbx_rlimit){ RLIMIT_CPU, parse_size(v), parse_size(v) };
        else die("unknown option %s", a);
    }
    if (save_bpf) {
        scmp_filter_ctx filter = build_filter();
        int fd = open(save_bpf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || seccomp_export_bpf(filter, fd) < 0) die("save %s failed", save_bpf);
        close(fd);
        return 0;
    }
    if (i >= argc) die("usage: sbx-run [options] -- /path/to/command [args...]");
    if (argv[i][0] != '/') die("the command must be an absolute path: %s", argv[i]);
    env[n_env] = NULL;

    char tmp_opts[64];
    snprintf(tmp_opts, sizeof tmp_opts, "size=%s,mode=1777", tmp_size);
    mirror(&m, "/usr");
    mirror(&m, "/bin");
    mirror(&m, "/sbin");
    mirror(&m, "/lib");
    mirror(&m, "/lib64");
    add_mount(&m, SBX_MOUNT_BIND, SBX_MOUNT_READONLY | SBX_MOUNT_OPTIONAL, "/etc/ld.so.cache", "/etc/ld.so.cache", NULL);
    int n_dev;
    const struct sbx_mount *dev = sbx_standard_dev_mounts(&n_dev);
    for (int k = 0; k < n_dev; k++) add_mount(&m, dev[k].kind, dev[k].flags, dev[k].source, dev[k].target, dev[k].data);
    add_mount(&m, SBX_MOUNT_PROC, 0, NULL, "/proc", NULL);
    add_mount(&m, SBX_MOUNT_TMPFS, 0, NULL, "/tmp", tmp_opts);
    /* After /tmp and the rest: a mount must come after those above it. */
    for (int k = 0; k < n_ro; k++) add_mount(&m, SBX_MOUNT_BIND, SBX_MOUNT_READONLY, ro[k], ro[k], NULL);
    if (bundle) add_mount(&m, SBX_MOUNT_BIND, SBX_MOUNT_READONLY, bundle, "/app", NULL);
    else add_mount(&m, SBX_MOUNT_DIR, 0, NULL, "/app", NULL);

    if (mkdir(root, 0755) < 0 && errno != EEXIST) die("mkdir %s: %s", root, strerror(errno));

    double t0 = now_ms();
    const void *bpf = NULL;
    size_t bpf_len = 0;
    if (use_seccomp && load_bpf) {
        int fd = open(load_bpf, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) die("open %s: %s", load_bpf, strerror(errno));
        bpf_len = (size_t)st.st_size;
        bpf = sbx_map_bpf(fd, bpf_len);
        if (bpf == NULL) die("map bpf: %s", strerror(errno));
        close(fd);
    } else if (use_seccomp) {
        scmp_filter_ctx filter = build_filter();
        int fd = sbx_export_bpf_to_memfd(filter, &bpf_len);
        if (fd < 0) die("export bpf: %s", strerror(errno));
        bpf = sbx_map_bpf(fd, bpf_len);
        if (bpf == NULL) die("map bpf: %s", strerror(errno));
        close(fd);
        seccomp_release(filter);
    }
    double t_filter = now_ms();

    struct cgroups cg = { .n = 0 };
    if (memory || pids) setup_cgroups(&cg, memory, pids);

    int ipc[2] = { -1, -1 };
    if (use_ipc && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ipc) < 0)
        die("socketpair: %s", strerror(errno));

    struct sbx_config cfg = {
        .exec_path = argv[i],
        .argv = &argv[i],
        .envp = (char *const *)env,
        .new_root = root,
        .mounts = m.list,
        .n_mounts = m.n,
        .workdir = "/app",
        .hostname = "aerogrid",
        .ipc_fd = ipc[1],
        .stdin_fd = 0, .stdout_fd = 1, .stderr_fd = 2,
        .uid = inner_id, .gid = inner_id,
        .host_uid = host_id, .host_gid = host_id,
        .rlimits = rl, .n_rlimits = n_rl,
        .bpf = bpf, .bpf_len = bpf_len,
    };

    /* Our own signals arrive on a signalfd and go to the sandbox's init. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);

    struct sbx_child child;
    struct sbx_failure failure;
    char msg[1024];
    double t_spawn0 = now_ms();
    if (sbx_spawn(&cfg, &child, &failure) < 0) {
        fprintf(stderr, "sbx-run: %s\n", sbx_format_failure(&failure, &cfg, msg, sizeof msg));
        remove_cgroups(&cg);
        return 124;
    }
    double t_spawned = now_ms();
    if (ipc[1] >= 0) close(ipc[1]);
    /* The cgroups were made before the spawn here: the parent writes the pid. */
    int placed = sbx_place_in_cgroup(&child, cg.fds, cg.n, 0, &failure);
    if (placed < 0) {
        fprintf(stderr, "sbx-run: %s\n", sbx_format_failure(&failure, &cfg, msg, sizeof msg));
        sbx_pidfd_send_signal(child.pidfd, SIGKILL);
        remove_cgroups(&cg);
        return 124;
    }
    /* 1: the init failed a setup step before it could be placed; that is the cause. */
    int setup = placed == 1 ? 1 : sbx_await_exec(&child, &failure);
    double t_exec = now_ms();
    if (setup == 1)
        fprintf(stderr, "sbx-run: %s\n", sbx_format_failure(&failure, &cfg, msg, sizeof msg));

    for (;;) {
        struct pollfd p[3] = { { child.pidfd, POLLIN, 0 }, { sfd, POLLIN, 0 }, { ipc[0], POLLIN, 0 } };
        if (poll(p, ipc[0] >= 0 ? 3 : 2, -1) < 0) continue;
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == sizeof si)
                sbx_pidfd_send_signal(child.pidfd, (int)si.ssi_signo);
        }
        if (ipc[0] >= 0 && (p[2].revents & (POLLIN | POLLHUP))) {
            char buf[4096];
            ssize_t n = recv(ipc[0], buf, sizeof buf, 0);
            if (n > 0) {
                fprintf(stderr, "sbx-run: ipc message: %.*s\n", (int)n, buf);
                send(ipc[0], buf, (size_t)n, MSG_NOSIGNAL); /* echo */
            } else {
                close(ipc[0]);
                ipc[0] = -1;
            }
        }
        if (p[0].revents & POLLIN) break;
    }

    struct sbx_exit ex;
    if (sbx_wait(&child, 0, &ex) < 0) die("wait: %s", strerror(errno));
    double t_end = now_ms();
    remove_cgroups(&cg);

    if (report) {
        if (ex.kind == SBX_EXIT_CODE) fprintf(stderr, "sbx-run: app exited with %d", ex.value);
        else if (ex.kind == SBX_EXIT_SIGNAL) fprintf(stderr, "sbx-run: app killed by signal %d (%s)", ex.value, strsignal(ex.value));
        else fprintf(stderr, "sbx-run: app status unknown");
        fprintf(stderr, "; init %s %d\n", ex.init_kind == SBX_EXIT_CODE ? "exited" : "killed by signal", ex.init_value);
        fprintf(stderr, "sbx-run: filter %.2f ms, spawn %.2f ms, spawn to exec %.2f ms, to exit %.2f ms\n",
                t_filter - t0, t_spawned - t_spawn0, t_exec - t_spawn0, t_end - t_spawn0);
    }
    if (setup == 1) return SBX_EXIT_SETUP_FAILED;
    return ex.init_kind == SBX_EXIT_CODE ? ex.init_value : 128 + ex.init_value;
}
