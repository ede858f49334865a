/*
 * Loading the app's seccomp filter, compiled and exported by the parent.
 * seccomp(2) directly: libseccomp allocates and cannot run in the child.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sbx_internal.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

int sbx_load_seccomp(const void *bpf, size_t len)
{
    if (bpf == NULL) return 0;
    if (len == 0 || len % sizeof(struct sock_filter) != 0 ||
        len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        errno = EINVAL;
        return -1;
    }
    struct sock_fprog prog = {
        .len = (unsigned short)(len / sizeof(struct sock_filter)),
        .filter = (struct sock_filter *)(uintptr_t)bpf,
    };
    /* No TSYNC: the app is single-threaded here. Needs no_new_privs (set). */
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}
