/*
 * Parent side only, and the one file that links libseccomp: libseccomp 2.5
 * has no in-memory export, so the BPF goes through a sealed memfd that the
 * parent maps and hands to the child in sbx_config.bpf.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sandbox_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int sbx_export_bpf_to_memfd(void *filter, size_t *size_out)
{
    int fd = memfd_create("aerogrid-seccomp-bpf", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;

    int rc = seccomp_export_bpf((scmp_filter_ctx)filter, fd);
    struct stat st;
    if (rc < 0 || fstat(fd, &st) < 0) {
        int err = rc < 0 ? -rc : errno;
        close(fd);
        errno = err;
        return -1;
    }
    /* Sealed: whoever holds the fd can no longer change the program. */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    *size_out = (size_t)st.st_size;
    return fd;
}
