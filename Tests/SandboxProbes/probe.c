/*
 * probe: one hostile behaviour per run, for the sandbox test suite.
 *
 *   probe BEHAVIOUR [ARG]
 *
 * Prints exactly one line on stdout:
 *   probe=NAME result=ok|errno|signal|unsupported [errno=ENAME] [key=value…]
 *
 * Each probe is meant to run twice — unsandboxed, then sandboxed — and the
 * two lines compared. Calls use deliberately invalid arguments where that
 * helps (the method of bubblewrap's tests/try-syscall.c): unfiltered, the
 * kernel answers with its own errno (EBADF, EFAULT, EINVAL…); filtered, the
 * filter's errno (EPERM, ENOSYS) shows. Everything is harmless unsandboxed:
 * bombs and fills take a cap (with a safe default), files are removed, and
 * nothing is ever sent to another process outside a fresh pid namespace.
 *
 * Build: cc -O2 -o probe probe.c -lpthread   (single file, no dependencies)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <netinet/in.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif

static const char *name;

static const char *errname(int err)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    const char *s = strerrorname_np(err);
    if (s) return s;
#endif
    static char buf[32];
    snprintf(buf, sizeof buf, "E%d", err);
    return buf;
}

/* The one output line. `extra` is appended as is ("key=value …"). */
static int emit(long r, int err, const char *fmt, ...)
{
    char extra[2048] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(extra, sizeof extra, fmt, ap);
        va_end(ap);
    }
    if (r < 0)
        printf("probe=%s result=errno errno=%s%s%s\n", name, errname(err), *extra ? " " : "", extra);
    else
        printf("probe=%s result=ok%s%s\n", name, *extra ? " " : "", extra);
    fflush(stdout);
    return 0;
}

static int unsupported(const char *why)
{
    printf("probe=%s result=unsupported reason=%s\n", name, why);
    fflush(stdout);
    return 0;
}

/* Runs a syscall-style call and reports it. */
#define SYS_PROBE(call)                      \
    do {                                     \
        errno = 0;                           \
        long r_ = (long)(call);              \
        int e_ = errno;                      \
        return emit(r_, e_, NULL);           \
    } while (0)

static long arg_long(const char *arg, long dflt)
{
    return arg ? strtol(arg, NULL, 10) : dflt;
}

/* ---- sockets --------------------------------------------------------------- */

static int socket_probe(int family, int type, int protocol)
{
    errno = 0;
    int fd = socket(family, type | SOCK_CLOEXEC, protocol);
    int err = errno;
    if (fd >= 0) close(fd);
    return emit(fd, err, NULL);
}

static int abstract_connect(const char *sock_name)
{
    if (sock_name == NULL) sock_name = "aerogrid-probe";
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return emit(-1, errno, "stage=socket");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = strlen(sock_name);
    if (len > sizeof sa.sun_path - 1) len = sizeof sa.sun_path - 1;
    memcpy(sa.sun_path + 1, sock_name, len); /* sun_path[0] = 0: abstract */
    errno = 0;
    int r = connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len));
    int err = errno;
    close(fd);
    return emit(r, err, "name=%s", sock_name);
}

/* ---- processes -------------------------------------------------------------- */

static int count_signalable(int *visible, pid_t skip_a, pid_t skip_b, pid_t skip_c)
{
    int n = 0;
    *visible = 0;
    DIR *d = opendir("/proc");
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        (*visible)++;
        if (pid == getpid() || pid == skip_a || pid == skip_b || pid == skip_c) continue;
        if (kill((pid_t)pid, 0) == 0) n++;
    }
    closedir(d);
    return n;
}

static pid_t sleeper(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(30);
        for (;;) pause();
    }
    return pid;
}

/* kill(-1, SIGKILL) reaches every process the caller may signal. Only done
 * for real when the probe is PID 1 or 2 — in a fresh pid namespace — so the
 * host run just counts what it *could* reach (kill(pid, 0)). */
static int kill_all(void)
{
    pid_t a = sleeper(), b = sleeper();
    int visible;
    int signalable = count_signalable(&visible, a, b, 0);
    int own_ns = getpid() <= 2;
    long r = 0;
    int err = 0, killed = 0;
    if (own_ns) {
        signal(SIGKILL, SIG_DFL);
        errno = 0;
        r = kill(-1, SIGKILL); /* spares the caller */
        err = errno;
    } else {
        kill(a, SIGKILL);
        kill(b, SIGKILL);
    }
    int st;
    if (waitpid(a, &st, 0) == a && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) killed++;
    if (waitpid(b, &st, 0) == b && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) killed++;
    return emit(r, err, "sent=%d visible=%d signalable_others=%d own_children_killed=%d",
                own_ns, visible, signalable, killed);
}

static int fork_bomb(long cap)
{
    pid_t *kids = calloc((size_t)cap, sizeof *kids);
    long n = 0;
    int err = 0;
    for (; n < cap; n++) {
        pid_t pid = fork();
        if (pid < 0) { err = errno; break; }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            alarm(60);
            for (;;) pause();
        }
        kids[n] = pid;
    }
    for (long i = 0; i < n; i++) kill(kids[i], SIGKILL);
    for (long i = 0; i < n; i++) waitpid(kids[i], NULL, 0);
    return emit(n < cap ? -1 : 0, err, "forked=%ld cap=%ld", n, cap);
}

static int block_fds[2];

static void *blocked_thread(void *unused)
{
    char c;
    (void)unused;
    ssize_t r = read(block_fds[0], &c, 1);
    (void)r;
    return NULL;
}

static int thread_bomb(long cap)
{
    if (pipe(block_fds) < 0) return emit(-1, errno, "stage=pipe");
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    long n = 0;
    int err = 0;
    for (; n < cap; n++) {
        pthread_t t;
        int rc = pthread_create(&t, &attr, blocked_thread, NULL);
        if (rc != 0) { err = rc; break; }
        pthread_detach(t);
    }
    return emit(n < cap ? -1 : 0, err, "threads=%ld cap=%ld", n, cap);
}

static int ignore_term_doublefork(long seconds)
{
    signal(SIGTERM, SIG_IGN);
    int fds[2];
    if (pipe(fds) < 0) return emit(-1, errno, "stage=pipe");
    pid_t child = fork();
    if (child == 0) {
        setsid();
        pid_t grandchild = fork();
        if (grandchild == 0) {
            char buf[32];
            int len = snprintf(buf, sizeof buf, "%d", (int)getpid());
            ssize_t w = write(fds[1], buf, (size_t)len);
            (void)w;
            close(fds[1]);
            close(fds[0]);
            close(0), close(1), close(2);
            struct timespec ts = { seconds, 0 };
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
            _exit(0);
        }
        _exit(0);
    }
    close(fds[1]);
    char buf[32] = "";
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    if (n > 0) buf[n] = '\0';
    waitpid(child, NULL, 0);
    emit(0, 0, "grandchild=%s seconds=%ld", buf, seconds);
    struct timespec ts = { seconds, 0 };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
    return 0;
}

/* ---- files ------------------------------------------------------------------ */

static int write_path(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/.probe-write-%d", dir ? dir : "/app", (int)getpid());
    errno = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int err = errno;
    if (fd >= 0) { close(fd); unlink(path); }
    return emit(fd, err, "path=%s", dir ? dir : "/app");
}

static int read_file(const char *path)
{
    errno = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return emit(-1, errno, "stage=open");
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf); /* contents are never printed */
    int err = errno;
    close(fd);
    return emit(n, err, "stage=read bytes=%zd", n < 0 ? (ssize_t)0 : n);
}

static int write_proc_self_exe(void)
{
    errno = 0;
    int fd = open("/proc/self/exe", O_WRONLY | O_CLOEXEC);
    int open_err = fd < 0 ? errno : 0;
    if (fd >= 0) close(fd);
    /* Touching the times is a write to the inode, and harmless on the host. */
    errno = 0;
    int r = utimensat(AT_FDCWD, "/proc/self/exe", NULL, 0);
    return emit(r, errno, "open_wronly=%s", fd >= 0 ? "ok" : errname(open_err));
}

static int fill_tmp(long max_mb)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/.probe-fill-%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return emit(-1, errno, "stage=open");
    static char chunk[1 << 16];
    memset(chunk, 'x', sizeof chunk);
    long long written = 0;
    int err = 0;
    while (written < (long long)max_mb << 20) {
        ssize_t n = write(fd, chunk, sizeof chunk);
        if (n < 0) { err = errno; break; }
        written += n;
    }
    close(fd);
    unlink(path);
    return emit(err ? -1 : 0, err, "written_kb=%lld max_mb=%ld", written >> 10, max_mb);
}

static int fsize(long max_bytes)
{
    signal(SIGXFSZ, SIG_IGN); /* so the write fails with EFBIG instead */
    char path[64];
    snprintf(path, sizeof path, "/tmp/.probe-fsize-%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return emit(-1, errno, "stage=open");
    static char chunk[1 << 16];
    long long written = 0;
    int err = 0;
    while (written < max_bytes) {
        ssize_t n = write(fd, chunk, sizeof chunk);
        if (n < 0) { err = errno; break; }
        written += n;
    }
    close(fd);
    unlink(path);
    return emit(err ? -1 : 0, err, "written=%lld max=%ld", written, max_bytes);
}

static int nofile(long cap)
{
    long n = 0;
    int err = 0;
    for (; n < cap; n++)
        if (open("/dev/null", O_RDONLY | O_CLOEXEC) < 0) { err = errno; break; }
    return emit(n < cap ? -1 : 0, err, "opened=%ld cap=%ld", n, cap);
}

static int alloc_touch(long mb)
{
    size_t size = (size_t)mb << 20;
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return emit(-1, errno, "stage=mmap mb=%ld", mb);
    long page = sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < size; off += (size_t)page) p[off] = 1;
    return emit(0, 0, "mb=%ld", mb);
}

static int busy_loop(long seconds)
{
    struct timespec start, now, cpu;
    clock_gettime(CLOCK_MONOTONIC, &start);
    volatile unsigned long spin = 0;
    do {
        for (int i = 0; i < 100000; i++) spin++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - start.tv_sec < seconds);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    double wall = (double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
    double used = (double)cpu.tv_sec + cpu.tv_nsec / 1e9;
    return emit(0, 0, "wall_s=%.2f cpu_s=%.2f cpu_share=%.2f", wall, used, used / wall);
}

static int list_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return emit(-1, errno, "stage=opendir");
    int self = dirfd(d);
    int fds[1024], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 1024) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd != self) fds[n++] = fd;
    }
    closedir(d);
    char buf[1500] = "";
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        /* readdir order is numeric for /proc/self/fd */
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d", i ? "," : "", fds[i]);
        if (len >= sizeof buf) break;
    }
    return emit(0, 0, "fds=%s count=%d", buf, n);
}

static int print_env(void)
{
    extern char **environ;
    char names[2048] = "";
    size_t len = 0;
    int n = 0;
    for (char **e = environ; *e; e++, n++) {
        const char *eq = strchr(*e, '=');
        int klen = eq ? (int)(eq - *e) : (int)strlen(*e);
        if (len < sizeof names)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%.*s", n ? "," : "", klen, *e);
    }
    return emit(0, 0, "count=%d names=%s", n, names);
}

static int status_field(const char *field, char *out, size_t outlen)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) return -1;
    char line[512];
    size_t flen = strlen(field);
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            char *v = line + flen + 1;
            while (*v == ' ' || *v == '\t') v++;
            v[strcspn(v, "\n")] = '\0';
            size_t vlen = strlen(v);
            if (vlen >= outlen) vlen = outlen - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

static int euid_report(void)
{
    char capeff[64] = "?";
    status_field("CapEff", capeff, sizeof capeff);
    return emit(0, 0, "uid=%d euid=%d capeff=%s", (int)getuid(), (int)geteuid(), capeff);
}

/* Execs PATH (meant to be a setuid copy of this probe) in euid-report mode
 * and reports what it got; no_new_privs and nosuid must leave it as is. */
static int setuid_exec(const char *path)
{
    if (path == NULL) return unsupported("needs-path-of-setuid-copy");
    int fds[2];
    if (pipe(fds) < 0) return emit(-1, errno, "stage=pipe");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execl(path, path, "euid-report", (char *)NULL);
        printf("probe=euid-report result=errno errno=%s\n", errname(errno));
        fflush(stdout);
        _exit(127);
    }
    close(fds[1]);
    char buf[512] = "";
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    if (n > 0) buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    waitpid(pid, NULL, 0);
    const char *inner = strstr(buf, "result=");
    return emit(0, 0, "euid_before=%d child=[%s]", (int)geteuid(), inner ? inner : buf);
}

/* Asks for CAP_SYS_ADMIN in the effective and permitted sets: a no-op for
 * a process that holds it (root on the host), EPERM for one that does not. */
static int capset_raise(void)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0) return emit(-1, errno, "stage=capget");
    d[0].effective |= 1u << CAP_SYS_ADMIN;
    d[0].permitted |= 1u << CAP_SYS_ADMIN;
    SYS_PROBE(syscall(SYS_capset, &h, d));
}

static int chown_probe(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/.probe-chown-%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return emit(-1, errno, "stage=create");
    close(fd);
    errno = 0;
    int r = chown(path, 1, 1);
    int err = errno;
    unlink(path);
    return emit(r, err, NULL);
}

static int mknod_probe(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/.probe-mknod-%d", (int)getpid());
    errno = 0;
    int r = mknod(path, S_IFCHR | 0600, makedev(1, 3));
    int err = errno;
    if (r == 0) unlink(path);
    return emit(r, err, NULL);
}

static int write_sys_fs_cgroup(void)
{
    errno = 0;
    int fd = open("/sys/fs/cgroup/.probe-write", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int err = errno;
    if (fd >= 0) { close(fd); unlink("/sys/fs/cgroup/.probe-write"); }
    return emit(fd, err, NULL);
}

static int personality_rie(void)
{
    errno = 0;
    int old = personality(0xffffffff);
    int r = personality(READ_IMPLIES_EXEC);
    int err = errno;
    if (r >= 0 && old >= 0) personality((unsigned long)old);
    return emit(r, err, NULL);
}

/* ---- other ABIs ------------------------------------------------------------ */

static void on_fatal(int sig)
{
    printf("probe=%s result=signal signal=%s\n", name, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    fflush(stdout);
    _exit(0);
}

static int x32_syscall(void)
{
#if defined(__x86_64__)
    signal(SIGSEGV, on_fatal);
    signal(SIGILL, on_fatal);
    SYS_PROBE(syscall(0x40000000L | SYS_getpid));
#else
    return unsupported("not-x86_64");
#endif
}

static int i386_syscall(void)
{
#if defined(__x86_64__)
    signal(SIGSEGV, on_fatal);
    signal(SIGILL, on_fatal);
    long ret;
    /* eax 20 = getpid in the i386 table. */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    if (ret < 0 && ret > -4096) return emit(-1, (int)-ret, "abi=i386");
    return emit(0, 0, "abi=i386 pid=%ld", ret);
#else
    return unsupported("not-x86_64");
#endif
}

static int ids(void)
{
    gid_t groups[64];
    int n = getgroups(64, groups);
    char buf[512] = "";
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof buf; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d", i ? "," : "", (int)groups[i]);
    return emit(0, 0, "uid=%d gid=%d pid=%d ppid=%d groups=%s", (int)getuid(), (int)getgid(),
                (int)getpid(), (int)getppid(), n > 0 ? buf : "none");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: probe BEHAVIOUR [ARG]\n");
        return 2;
    }
    name = argv[1];
    const char *arg = argc > 2 ? argv[2] : NULL;
    const char *n = name;

    if (!strcmp(n, "socket-inet")) return socket_probe(AF_INET, SOCK_STREAM, 0);
    if (!strcmp(n, "socket-inet6")) return socket_probe(AF_INET6, SOCK_STREAM, 0);
    if (!strcmp(n, "socket-netlink")) return socket_probe(AF_NETLINK, SOCK_RAW, 0);
    if (!strcmp(n, "socket-packet")) return socket_probe(AF_PACKET, SOCK_RAW, 0);
    if (!strcmp(n, "socket-vsock")) return socket_probe(AF_VSOCK, SOCK_STREAM, 0);
    if (!strcmp(n, "socket-alg")) return socket_probe(AF_ALG, SOCK_SEQPACKET, 0);
    if (!strcmp(n, "socket-unix")) return socket_probe(AF_UNIX, SOCK_STREAM, 0);
    if (!strcmp(n, "raw-socket")) return socket_probe(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (!strcmp(n, "abstract-unix-connect")) return abstract_connect(arg);
    /* A pid that cannot exist: ESRCH unfiltered, and nothing gets stopped. */
    if (!strcmp(n, "ptrace")) SYS_PROBE(ptrace(PTRACE_ATTACH, (pid_t)INT_MAX, NULL, NULL));
    if (!strcmp(n, "process-vm-writev")) SYS_PROBE(syscall(SYS_process_vm_writev, getpid(), NULL, 0, NULL, 0, ~0UL));
    if (!strcmp(n, "pidfd-getfd")) SYS_PROBE(syscall(SYS_pidfd_getfd, -1, 0, 0));
    if (!strcmp(n, "kill-all")) return kill_all();
    if (!strcmp(n, "unshare-newuser")) SYS_PROBE(unshare(CLONE_NEWUSER));
    /* NEWNS together with FS is refused by the kernel (EINVAL) before any
     * process is created; a filter says EPERM first. */
    if (!strcmp(n, "clone-newns")) {
        long r = syscall(SYS_clone, (unsigned long)(CLONE_NEWNS | CLONE_FS | SIGCHLD), 0, 0, 0, 0);
        if (r == 0) _exit(0);
        int err = errno;
        if (r > 0) waitpid((pid_t)r, NULL, 0);
        return emit(r, err, NULL);
    }
    if (!strcmp(n, "clone3")) SYS_PROBE(syscall(SYS_clone3, NULL, 0));
    if (!strcmp(n, "mount")) SYS_PROBE(mount("none", "/nonexistent-probe-dir", "tmpfs", 0, NULL));
    if (!strcmp(n, "umount2")) SYS_PROBE(umount2("/nonexistent-probe-dir", 0));
    if (!strcmp(n, "pivot-root")) SYS_PROBE(syscall(SYS_pivot_root, "/nonexistent-probe-dir", "/nonexistent-probe-dir"));
    if (!strcmp(n, "setns")) SYS_PROBE(setns(-1, 0));
    if (!strcmp(n, "fsopen")) SYS_PROBE(syscall(SYS_fsopen, "probe-nonexistent-fs", 0));
    if (!strcmp(n, "move-mount")) SYS_PROBE(syscall(SYS_move_mount, -1, "", -1, "", 0));
    if (!strcmp(n, "bpf")) SYS_PROBE(syscall(SYS_bpf, -1, NULL, 0));
    if (!strcmp(n, "perf-event-open")) SYS_PROBE(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    if (!strcmp(n, "userfaultfd")) SYS_PROBE(syscall(SYS_userfaultfd, ~0));
    if (!strcmp(n, "io-uring-setup")) SYS_PROBE(syscall(SYS_io_uring_setup, 0, NULL));
    if (!strcmp(n, "keyctl")) SYS_PROBE(syscall(SYS_keyctl, -1, 0, 0, 0, 0));
    if (!strcmp(n, "ioctl-tiocsti")) SYS_PROBE(syscall(SYS_ioctl, -1, (unsigned long)TIOCSTI, "x"));
    if (!strcmp(n, "ioctl-tiocsti-highbits")) SYS_PROBE(syscall(SYS_ioctl, -1, (1UL << 32) | TIOCSTI, "x"));
    if (!strcmp(n, "personality-rie")) return personality_rie();
    if (!strcmp(n, "list-fds")) return list_fds();
    if (!strcmp(n, "write-proc-self-exe")) return write_proc_self_exe();
    if (!strcmp(n, "write-path")) return write_path(arg);
    if (!strcmp(n, "read-etc-shadow")) return read_file("/etc/shadow");
    /* PID 1 in the sandbox is its init, a copy of the supervisor's memory.
     * ARG: another pid, for a baseline on hosts whose own PID 1 is shielded. */
    if (!strcmp(n, "read-proc1-environ") || !strcmp(n, "read-proc1-mem")) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%s/%s", arg ? arg : "1", strrchr(n, '-') + 1);
        return read_file(path);
    }
    if (!strcmp(n, "write-sys-fs-cgroup")) return write_sys_fs_cgroup();
    if (!strcmp(n, "setuid-exec")) return setuid_exec(arg);
    if (!strcmp(n, "euid-report")) return euid_report();
    if (!strcmp(n, "capset")) return capset_raise();
    if (!strcmp(n, "chown")) return chown_probe();
    if (!strcmp(n, "mknod")) return mknod_probe();
    if (!strcmp(n, "fill-tmp")) return fill_tmp(arg_long(arg, 64));
    if (!strcmp(n, "fsize")) return fsize(arg_long(arg, 8 << 20));
    if (!strcmp(n, "nofile")) return nofile(arg_long(arg, 4096));
    if (!strcmp(n, "fork-bomb")) return fork_bomb(arg_long(arg, 200));
    if (!strcmp(n, "thread-bomb")) return thread_bomb(arg_long(arg, 200));
    if (!strcmp(n, "alloc-touch")) return alloc_touch(arg_long(arg, 64));
    if (!strcmp(n, "busy-loop")) return busy_loop(arg_long(arg, 1));
    if (!strcmp(n, "x32-syscall")) return x32_syscall();
    if (!strcmp(n, "i386-syscall")) return i386_syscall();
    if (!strcmp(n, "ignore-term-doublefork")) return ignore_term_doublefork(arg_long(arg, 30));
    if (!strcmp(n, "print-env")) return print_env();
    if (!strcmp(n, "ids")) return ids();
    fprintf(stderr, "probe: unknown behaviour %s\n", n);
    return 2;
}
