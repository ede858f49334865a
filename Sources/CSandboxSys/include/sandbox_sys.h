/*
 * CSandboxSys: the part of the AeroGrid sandbox that has to be C.
 *
 * The parent fills a plain `struct sbx_config` (everything that allocates —
 * profile parsing, BPF compilation, path resolution — happens before), then
 * calls sbx_spawn(). Between clone and execve only async-signal-safe code runs:
 * no malloc, no stdio, no locks. See docs/sandbox.md for the order of steps.
 *
 * Process layout:
 *
 *   parent (supervisor or launcher)
 *     └─ sandbox init   PID 1 in the new pid namespace; reaps, forwards signals,
 *        │              reports how the app ended; never runs app code
 *        └─ app         PID 2; seccomp filter, no capabilities, fds 0-3 only
 */
#ifndef AEROGRID_SANDBOX_SYS_H
#define AEROGRID_SANDBOX_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <spawn.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Namespace flags (Glibc's Swift module does not export CLONE_NEW*). */
#define SBX_CLONE_NEWNS      0x00020000
#define SBX_CLONE_NEWCGROUP  0x02000000
#define SBX_CLONE_NEWUTS     0x04000000
#define SBX_CLONE_NEWIPC     0x08000000
#define SBX_CLONE_NEWUSER    0x10000000
#define SBX_CLONE_NEWPID     0x20000000
#define SBX_CLONE_NEWNET     0x40000000
/* Every namespace the sandbox gets (the cgroup one is entered by the child
 * after the parent has moved it into its cgroup, so that cgroup is its root). */
#define SBX_NAMESPACES (SBX_CLONE_NEWUSER | SBX_CLONE_NEWNS | SBX_CLONE_NEWPID | \
                        SBX_CLONE_NEWNET | SBX_CLONE_NEWIPC | SBX_CLONE_NEWUTS | \
                        SBX_CLONE_NEWCGROUP)

/* ---- configuration, prepared by the parent ------------------------------ */

enum sbx_mount_kind {
    SBX_MOUNT_BIND = 1, /* host `source` (file or directory) at `target`     */
    SBX_MOUNT_TMPFS,    /* `data` holds tmpfs options: "size=64m,mode=1777"  */
    SBX_MOUNT_PROC,     /* a fresh procfs of the sandbox's pid namespace     */
    SBX_MOUNT_DIR,      /* an empty directory                                */
    SBX_MOUNT_SYMLINK,  /* `target` -> `source`, e.g. /lib -> usr/lib        */
};

/* Mount flags. nosuid is always set; nodev unless SBX_MOUNT_DEVICES. */
#define SBX_MOUNT_READONLY  0x1u
#define SBX_MOUNT_NOEXEC    0x2u
#define SBX_MOUNT_DEVICES   0x4u /* device nodes usable (binds of /dev/null…) */
#define SBX_MOUNT_OPTIONAL  0x8u /* BIND: skip silently if the source is missing */

struct sbx_mount {
    int kind;             /* enum sbx_mount_kind */
    unsigned flags;       /* SBX_MOUNT_* */
    const char *source;   /* BIND: host path; SYMLINK: link content; else NULL */
    const char *target;   /* absolute path inside the sandbox, no "..", not
                             through a symlink; parents listed before children */
    const char *data;     /* TMPFS: options; else NULL */
};

struct sbx_rlimit {
    int resource;         /* RLIMIT_* */
    uint64_t soft, hard;  /* UINT64_MAX = unlimited */
};

struct sbx_config {
    /* What to run. exec_path is a path inside the sandbox. envp is the whole
     * environment: nothing of the parent's is inherited. */
    const char *exec_path;
    char *const *argv;
    char *const *envp;

    /* The root: `new_root` is an existing empty host directory whose every
     * path component the sandbox user can search (e.g. /run/aerogrid/root,
     * 0755); a tmpfs is mounted on it inside the sandbox's private mount
     * namespace, so one directory serves every sandbox. `mounts` are made in
     * order (a /proc mount included: PID 1 mounts it), then the root becomes
     * read-only. Bind sources are opened with the parent's uid, so they need
     * not be readable by the sandbox uid. */
    const char *new_root;
    const struct sbx_mount *mounts;
    int n_mounts;
    const char *workdir;  /* inside; NULL = "/" */
    const char *hostname; /* NULL = "sandbox" */

    /* Descriptors in the parent. ipc_fd becomes fd 3 (-1: no fd 3);
     * stdio -1 = /dev/null. Every other descriptor is closed. */
    int ipc_fd;
    int stdin_fd, stdout_fd, stderr_fd;

    /* Identity: inside the user namespace the app is uid:gid, which maps to
     * host_uid:host_gid — an unprivileged host id, never 0 (refused). One id
     * is mapped; setgroups is denied. */
    uid_t uid, host_uid;
    gid_t gid, host_gid;

    const struct sbx_rlimit *rlimits;  /* applied to the app only */
    int n_rlimits;

    /* The seccomp program (struct sock_filter[]) the app loads last before
     * execve; e.g. mapped from sbx_export_bpf_to_memfd(). NULL = no filter. */
    const void *bpf;
    size_t bpf_len;

};

/* ---- spawning ------------------------------------------------------------ */

/* Steps, in the order they run. A failure names one (see sbx_step_name). */
enum sbx_step {
    SBX_STEP_NONE = 0,
    /* parent */
    SBX_STEP_CONFIG, SBX_STEP_PIPES, SBX_STEP_CLONE,
    SBX_STEP_SETGROUPS, SBX_STEP_UID_MAP, SBX_STEP_GID_MAP,
    SBX_STEP_RELEASE, SBX_STEP_CGROUP_JOIN, SBX_STEP_CGROUP_SEND,
    /* child, PID 1 */
    SBX_STEP_PDEATHSIG, SBX_STEP_DUMPABLE, SBX_STEP_SIGNALS, SBX_STEP_WAIT_PARENT,
    SBX_STEP_OPEN_SOURCE, SBX_STEP_SETID, SBX_STEP_MOUNT_PRIVATE, SBX_STEP_ROOT_TMPFS,
    SBX_STEP_MOUNT, SBX_STEP_PIVOT_ROOT, SBX_STEP_UMOUNT_OLD_ROOT,
    SBX_STEP_ROOT_READONLY, SBX_STEP_CHDIR, SBX_STEP_HOSTNAME, SBX_STEP_SETSID,
    SBX_STEP_WAIT_CGROUP, SBX_STEP_CGROUP_NS,
    SBX_STEP_CAP_BOUNDING, SBX_STEP_SECUREBITS, SBX_STEP_CAP_AMBIENT,
    SBX_STEP_CAPSET, SBX_STEP_NO_NEW_PRIVS, SBX_STEP_FORK,
    /* app (PID 2) */
    SBX_STEP_APP_SETSID, SBX_STEP_FDS, SBX_STEP_CLOSE_FDS, SBX_STEP_RLIMIT,
    SBX_STEP_UNBLOCK_SIGNALS, SBX_STEP_SECCOMP, SBX_STEP_EXECVE,
    SBX_STEP_COUNT
};

/* A failed setup step. `index` is the mount or rlimit index, else -1. */
struct sbx_failure {
    int32_t step;   /* enum sbx_step */
    int32_t err;    /* errno */
    int32_t index;
    int32_t pid;    /* 1 = init, 2 = app, 0 = parent */
};

struct sbx_child {
    pid_t pid;      /* the sandbox init, in the parent's pid namespace */
    int pidfd;      /* pidfd of the init: poll it, signal it, wait on it */
    int errfd;      /* setup failures; EOF once the app has exec'd */
    int statusfd;   /* the init writes the app's wait status here */
    int cgroupfd;   /* until sbx_place_in_cgroup: the init waits on it before the fork */
};

/* Clones the sandbox and releases it once the uid/gid maps are written.
 * Returns 0 and fills *child, or -1 with *failure (a parent step) and errno.
 * The init then builds its file system while the caller makes its cgroup, and
 * waits for sbx_place_in_cgroup before it forks the app: nothing of the app's
 * runs outside the cgroup, and the two setups overlap.
 * Call from one long-lived thread: PR_SET_PDEATHSIG fires when the *thread*
 * that cloned exits. Takes ownership of nothing; cfg may be freed after. */
int sbx_spawn(const struct sbx_config *cfg, struct sbx_child *child,
              struct sbx_failure *failure);

/* Puts the sandbox in its cgroup and lets the init go on; call it exactly once
 * after sbx_spawn (with n = 0 when there is no cgroup). `fds` are open
 * cgroup.procs files (one per v1 controller, or the single v2 one), into which
 * this writes the init's pid; or, with join_self, v1 `tasks` files that are
 * passed to the init (SCM_RIGHTS), which writes "0" into each: moving the
 * calling thread takes no global lock, where writing a pid waits for an RCU
 * grace period (about 10 ms). The init is single-threaded, so the thread is
 * the process; the app forked after inherits the cgroups. The init then
 * unshares its cgroup namespace, rooted there. Closes child->cgroupfd.
 * 0; 1 when the init had already failed a setup step and exited (*failure is
 * its record, as from sbx_await_exec, and child->errfd is closed); or -1 with
 * *failure and errno (the caller kills the init). */
int sbx_place_in_cgroup(struct sbx_child *child, const int *fds, int n, int join_self,
                        struct sbx_failure *failure);

/* Blocks until the app has exec'd (returns 0) or a step failed (returns 1,
 * *failure filled; the init then exits 125 and must still be waited for).
 * -1 on a read error. Closes child->errfd. */
int sbx_await_exec(struct sbx_child *child, struct sbx_failure *failure);

/* ---- how it ended ---------------------------------------------------------
 * The init exits with a shell-style code: the app's exit code, or 128+signal
 * if the app was killed (SIGSYS, a seccomp kill, gives 159). It writes the
 * app's raw wait status to statusfd first, which tells exit(159) apart from
 * a SIGSYS. SBX_EXIT_SETUP_FAILED means a step failed before exec.
 * If the init itself is killed (SIGKILL, or its parent thread died) the kernel
 * kills every process of the pid namespace with it, and statusfd stays empty. */
#define SBX_EXIT_SETUP_FAILED 125

enum sbx_exit_kind {
    SBX_EXIT_UNKNOWN = 0, /* the init died before the app: see init_* */
    SBX_EXIT_CODE = 1,
    SBX_EXIT_SIGNAL = 2,
};

struct sbx_exit {
    int kind;         /* enum sbx_exit_kind: how the app ended */
    int value;        /* exit code or signal number */
    int core_dumped;
    int init_kind;    /* how the init ended (SBX_EXIT_CODE or SBX_EXIT_SIGNAL) */
    int init_value;
};

/* Waits for the init to exit (WNOHANG with nonblock != 0: returns 1 if it
 * still runs), reaps it and fills *out. 0 on success, -1 with errno.
 * Closes statusfd and pidfd on success. The parent must not set SIGCHLD to
 * SIG_IGN: the kernel would reap the init itself. */
int sbx_wait(struct sbx_child *child, int nonblock, struct sbx_exit *out);

/* How the app ended, from the wait status the init writes to statusfd (or a
 * dup of it) before it exits: known without waiting for the sandbox's
 * teardown (its mount namespace, its cgroup). Blocks until the init has
 * written or is gone. 0 with out->kind, value and core_dumped set; 1 when the
 * init died without writing (killed: sbx_wait says how); -1 with errno. The
 * status is read once: a later sbx_wait finds none (kind SBX_EXIT_UNKNOWN). */
int sbx_read_app_status(int statusfd, struct sbx_exit *out);

/* For a launcher that exits as soon as it knows how the app ended (it may
 * call this as soon as the sandbox runs): starts a helper process that waits
 * on `pidfd` until the init is gone (and with it, the kernel guarantees,
 * every process of the sandbox's pid namespace), then, when `hold_fd` is a
 * pipe's read end, until every write end is closed (the caller keeps one
 * while it may still read the cgroup: its exit closes it too), then
 * removes each directory of `dirs` (the sandbox's cgroup) and exits. The
 * helper shares the caller's memory (CLONE_VM, its own stack), so starting it
 * copies nothing and the caller's exit leaves the address space's teardown to
 * it; it touches nothing of the caller's but what this copies first, closes
 * every fd but those two and blocks every signal, so it outlives a caller
 * killed with SIGKILL. Once per process (its stack and data are static).
 * 0, or -1 with errno. */
int sbx_detach_cleanup(int pidfd, int hold_fd, const char *const *dirs, int n);

/* Closes whatever fds of *child are still open (>= 0) and sets them to -1. */
void sbx_child_close(struct sbx_child *child);

/* "pivot_root", "mount", …; "?" for an unknown step. */
const char *sbx_step_name(int step);

/* "sandbox setup failed at mount[3] /usr: ENOENT (No such file or directory)"
 * into buf (cfg may be NULL; it adds the mount target). Returns buf. */
char *sbx_format_failure(const struct sbx_failure *failure,
                         const struct sbx_config *cfg, char *buf, size_t len);

/* A standard minimal /dev, to append to `mounts`: a tmpfs with binds of
 * the host's null, zero, full, random and urandom, the /dev/fd and
 * /dev/std{in,out,err} links, and a 16 MiB /dev/shm. No tty. Static storage. */
const struct sbx_mount *sbx_standard_dev_mounts(int *count);

/* ---- syscalls Swift cannot reach --------------------------------------- */

int sbx_pidfd_open(pid_t pid, unsigned flags);
int sbx_pidfd_send_signal(int pidfd, int sig);
/* waitid(P_PIDFD). On success *code is CLD_EXITED/CLD_KILLED/CLD_DUMPED and
 * *status the exit code or signal; returns 0, or 1 when WNOHANG and still
 * running; -1 with errno. */
int sbx_waitid_pidfd(int pidfd, int options, int *code, int *status);
int sbx_close_range(unsigned first, unsigned last, unsigned flags);
int sbx_unshare(int flags);
int sbx_setns(int fd, int nstype);
int sbx_set_pdeathsig(int sig);
int sbx_set_no_new_privs(void);
int sbx_set_child_subreaper(int on);
int sbx_set_dumpable(int on);
int sbx_memfd_create(const char *name, unsigned flags);
/* pipe2(2): Glibc's Swift module hides it (it needs _GNU_SOURCE). */
int sbx_pipe2(int fds[2], int flags);
/* posix_spawn_file_actions_addclosefrom_np (glibc 2.34): the spawned command
 * gets no descriptor from `from` up, whether or not it was close-on-exec.
 * Glibc's Swift module hides it (it needs _GNU_SOURCE). */
int sbx_spawn_close_from(posix_spawn_file_actions_t *actions, int from);
/* RLIMIT_NPROC, which Glibc's Swift module does not export either. */
#define SBX_RLIMIT_NPROC 6

/* ---- seccomp (parent side; links libseccomp) ----------------------------- */

/* Exports `filter`, a libseccomp scmp_filter_ctx, as a BPF program into a
 * sealed memfd. Returns the fd and *size_out (bytes), or -1 with errno. */
int sbx_export_bpf_to_memfd(void *filter, size_t *size_out);
/* Maps such a memfd read-only; sbx_unmap_bpf releases it. NULL on error. */
const void *sbx_map_bpf(int fd, size_t size);
void sbx_unmap_bpf(const void *bpf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
