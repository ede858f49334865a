/*
 * The sandbox's file system: a tmpfs root holding only what was asked for,
 * then pivot_root into it. Runs in the child: async-signal-safe only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sbx_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h> /* ST_* flag values, which statfs(2) f_flags uses too */
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

/* struct mount_attr of linux/mount.h, which clashes with sys/mount.h. */
struct sbx_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#define SBX_MOUNT_ATTR_RDONLY 0x1u
#define SBX_MOUNT_ATTR_NOSUID 0x2u
#define SBX_MOUNT_ATTR_NODEV  0x4u
#define SBX_MOUNT_ATTR_NOEXEC 0x8u

/* mkdir -p of a mount target below the new root (which exists; root_len is
 * its length); without include_last only up to the parent (file targets). */
static int make_dirs(const struct sbx_prepared_mount *pm, int include_last)
{
    char buf[PATH_MAX];
    size_t n = strlen(pm->target);
    if (n >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, pm->target, n + 1);
    if (!include_last) {
        char *slash = strrchr(buf, '/');
        if (slash == NULL || slash <= buf + pm->root_len) return 0;
        *slash = '\0';
    }
    for (char *p = buf + pm->root_len + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST) return -1;
        if (saved == '\0') return 0;
        *p = saved;
    }
}

/* A file to bind a file onto. */
static int make_file(const struct sbx_prepared_mount *pm)
{
    if (make_dirs(pm, 0) < 0) return -1;
    int fd = open(pm->target, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0444);
    if (fd < 0) return errno == EEXIST ? 0 : -1;
    return close(fd);
}

/* statfs flags -> mount flags. Inside a user namespace the kernel locks the
 * nosuid, nodev, noexec, read-only and atime flags of every mount it copied
 * from the host; a remount that drops one of them fails with EPERM. */
static unsigned long locked_flags(unsigned long st)
{
    unsigned long ms = 0;
    if (st & ST_RDONLY) ms |= MS_RDONLY;
    if (st & ST_NOSUID) ms |= MS_NOSUID;
    if (st & ST_NODEV) ms |= MS_NODEV;
    if (st & ST_NOEXEC) ms |= MS_NOEXEC;
    if (st & ST_NOATIME) ms |= MS_NOATIME;
    if (st & ST_NODIRATIME) ms |= MS_NODIRATIME;
    if (st & ST_RELATIME) ms |= MS_RELATIME;
    return ms;
}

/* Binds `source` at `target` with nosuid, nodev (unless devices are wanted),
 * read-only and noexec as asked. */
static int bind_mount(const char *source, const char *target, unsigned flags)
{
    unsigned long ms = MS_NOSUID;
    uint64_t attr = SBX_MOUNT_ATTR_NOSUID;
    if (!(flags & SBX_MOUNT_DEVICES)) { ms |= MS_NODEV; attr |= SBX_MOUNT_ATTR_NODEV; }
    if (flags & SBX_MOUNT_READONLY) { ms |= MS_RDONLY; attr |= SBX_MOUNT_ATTR_RDONLY; }
    if (flags & SBX_MOUNT_NOEXEC) { ms |= MS_NOEXEC; attr |= SBX_MOUNT_ATTR_NOEXEC; }

#ifndef SBX_NO_MOUNT_SETATTR
    /* Linux >= 5.12: recursive, so mounts under the source come along and
     * are made read-only too; it only adds flags, so locked ones stay. */
    struct sbx_mount_attr a = { .attr_set = attr };
    if (mount(source, target, NULL, MS_BIND | MS_REC, NULL) < 0) return -1;
    if (syscall(SYS_mount_setattr, AT_FDCWD, target, AT_RECURSIVE, &a, sizeof a) == 0)
        return 0;
    if (errno != ENOSYS || umount2(target, MNT_DETACH) < 0) return -1;
#else
    (void)attr;
#endif
    /* Older kernels: flags of a bind mount change only through a remount
     * with MS_REMOUNT|MS_BIND (MS_RDONLY on the bind call itself is
     * ignored), restating the flags the kernel locked, and only for the top
     * mount. So the bind is not recursive: a source with mount points under
     * it fails (EINVAL, its submounts are locked) instead of bringing them
     * in writable. */
    struct statfs st;
    if (mount(source, target, NULL, MS_BIND, NULL) < 0) return -1;
    if (statfs(target, &st) < 0) return -1;
    return mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | ms | locked_flags(st.f_flags), NULL);
}

static void format_fd_path(char *buf, int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    char digits[12];
    int n = 0;
    memcpy(buf, prefix, sizeof prefix - 1);
    buf += sizeof prefix - 1;
    do digits[n++] = (char)('0' + fd % 10); while ((fd /= 10) > 0);
    while (n > 0) *buf++ = digits[--n];
    *buf = '\0';
}

/* Opens every bind source as O_PATH, while the child still has the parent's
 * uid: the sandbox uid may not search a host path like /root/.pyenv, and the
 * mount then follows the fd. Done here, not in the parent, because a bind
 * from a mount of another mount namespace is refused (EINVAL). */
int sbx_open_mount_sources(const struct sbx_ctx *c, int *failed_index)
{
    const struct sbx_config *cfg = c->cfg;
    for (int i = 0; i < cfg->n_mounts; i++) {
        const struct sbx_mount *m = &cfg->mounts[i];
        struct sbx_prepared_mount *pm = &c->mounts[i];
        struct stat st;
        if (m->kind != SBX_MOUNT_BIND) continue;
        *failed_index = i;
        pm->source_fd = open(m->source, O_PATH | O_CLOEXEC);
        if (pm->source_fd < 0) {
            if (errno == ENOENT && (m->flags & SBX_MOUNT_OPTIONAL)) {
                pm->skip = 1;
                continue;
            }
            return -1;
        }
        if (fstat(pm->source_fd, &st) < 0) return -1;
        pm->is_dir = S_ISDIR(st.st_mode);
        format_fd_path(pm->source_path, pm->source_fd);
    }
    *failed_index = -1;
    return 0;
}

int sbx_mount_root_tmpfs(const char *new_root)
{
    /* Only mount points live here, and it is made read-only once filled. */
    return mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV,
                 "mode=0755,size=1m,nr_inodes=4096");
}

int sbx_mount_one(const struct sbx_mount *m, const struct sbx_prepared_mount *pm)
{
    unsigned long common = MS_NOSUID | MS_NODEV;
    if (m->flags & SBX_MOUNT_NOEXEC) common |= MS_NOEXEC;
    if (pm->skip) return 0;

    switch (m->kind) {
    case SBX_MOUNT_BIND:
        if ((pm->is_dir ? make_dirs(pm, 1) : make_file(pm)) < 0) return -1;
        if (bind_mount(pm->source_path, pm->target, m->flags) < 0) return -1;
        return close(pm->source_fd); /* keeps nothing of the host pinned */
    case SBX_MOUNT_TMPFS:
        if (make_dirs(pm, 1) < 0) return -1;
        if (m->flags & SBX_MOUNT_READONLY) common |= MS_RDONLY;
        return mount("tmpfs", pm->target, "tmpfs", common, m->data);
    case SBX_MOUNT_PROC:
        /* Shows the processes of the pid namespace of the mounter: us, PID 1.
         * Mounted before the old root goes: the kernel allows a new procfs in
         * a user namespace only while a fully visible one is mounted. */
        if (make_dirs(pm, 1) < 0) return -1;
        return mount("proc", pm->target, "proc", common | MS_NOEXEC, NULL);
    case SBX_MOUNT_DIR:
        return make_dirs(pm, 1);
    case SBX_MOUNT_SYMLINK:
        if (make_dirs(pm, 0) < 0) return -1;
        if (symlink(m->source, pm->target) < 0 && errno != EEXIST) return -1;
        return 0;
    default:
        errno = EINVAL;
        return -1;
    }
}

int sbx_pivot_root(const char *new_root)
{
    /* pivot_root(".", ".") stacks the old root on the new one; the caller
     * then detaches it with umount2(".", MNT_DETACH). No put_old directory. */
    if (chdir(new_root) < 0) return -1;
    return (int)syscall(SYS_pivot_root, ".", ".");
}

int sbx_remount_root_readonly(void)
{
    if (chdir("/") < 0) return -1;
    return mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
}
