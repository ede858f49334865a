/* Internal to CSandboxSys. Everything the child reads is built here by the
 * parent before clone; the child only reads it (its copy of the memory). */
#ifndef AEROGRID_SBX_INTERNAL_H
#define AEROGRID_SBX_INTERNAL_H

#include "sandbox_sys.h"

#include <sched.h>
#include <signal.h>

#define SBX_MAX_MOUNTS 256
#define SBX_MAX_RLIMITS 32
#define SBX_MAX_CGROUP_FDS 16

/* A mount as the child will perform it. The parent fills `target`; the
 * child fills the rest in its copy of this memory (it may write, not allocate). */
struct sbx_prepared_mount {
    char *target;         /* new_root + mount target */
    size_t root_len;      /* length of the new_root prefix of target */
    int skip;             /* optional bind whose source is missing */
    int is_dir;           /* BIND: the source is a directory */
    int source_fd;        /* BIND: O_PATH fd of the source */
    char source_path[32]; /* BIND: "/proc/self/fd/N", what gets mounted */
};

struct sbx_ctx {
    const struct sbx_config *cfg;
    struct sbx_prepared_mount *mounts;
    int parent_fds[4];    /* the parent's pipe ends: the child closes them first */
    int sync_fd;          /* read end: one byte once the uid/gid maps are written */
    int cgroup_fd;        /* socket: one byte (with `tasks` fds to join) once the cgroup is ready */
    int err_fd;           /* write end: struct sbx_failure records */
    int status_fd;        /* write end: the app's wait status, from the init */
    int null_fd;          /* /dev/null for stdio the parent did not give */
    unsigned max_fd;      /* highest fd that may be open, for the close fallback */
    int moved_off_cpu;    /* the parent kept the child off its CPU: restore `cpus` */
    cpu_set_t cpus;       /* the parent's CPU affinity, the child's once it runs */
};

/* child.c */
_Noreturn void sbx_child_main(const struct sbx_ctx *ctx);
_Noreturn void sbx_child_fail(int report_fd, int step, int index, int err);

/* mounts.c */
int sbx_open_mount_sources(const struct sbx_ctx *ctx, int *failed_index);
int sbx_mount_root_tmpfs(const char *new_root);
int sbx_mount_one(const struct sbx_mount *m, const struct sbx_prepared_mount *pm);
int sbx_pivot_root(const char *new_root);
int sbx_remount_root_readonly(void);

/* caps.c */
int sbx_drop_bounding_set(void);
int sbx_lock_securebits(void);
int sbx_clear_ambient(void);
int sbx_clear_capabilities(void);

/* fds.c */
int sbx_arrange_app_fds(const struct sbx_ctx *ctx, int *report_fd);
int sbx_close_from(unsigned first, unsigned max_fd);
int sbx_close_all_but(int keep, unsigned max_fd);

/* seccomp_load.c */
int sbx_load_seccomp(const void *bpf, size_t len);

/* init.c */
int sbx_init_block_signals(void);
_Noreturn void sbx_init_main(const struct sbx_ctx *ctx, pid_t app);
int sbx_exit_code_for(int wstatus); /* exit code, or 128 + signal */

/* sys.c */
int sbx_raw_setresuid(uid_t uid);
int sbx_raw_setresgid(gid_t gid);
int sbx_reset_signal_dispositions(void);

#endif
