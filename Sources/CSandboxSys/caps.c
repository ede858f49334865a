/*
 * Capabilities. The child holds every capability of its new user namespace
 * (worthless on the host, but enough to mount and to pivot_root inside);
 * all of them go before execve. Raw prctl/capset: no libcap in the child.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sbx_internal.h"

#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The bounding set limits what any later execve can grant (file caps, or
 * root's implicit ones). PR_CAPBSET_DROP fails with EINVAL past the last
 * capability this kernel knows, so no /proc lookup of cap_last_cap. */
int sbx_drop_bounding_set(void)
{
    int cap = 0;
    while (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0) cap++;
    return errno == EINVAL && cap > 0 ? 0 : -1;
}

/* uid 0 inside gets no capabilities from execve, setuid transitions do not
 * touch them, ambient ones cannot be raised — and none of it can be undone.
 * Needs CAP_SETPCAP, so it comes before capset() empties the sets. */
int sbx_lock_securebits(void)
{
    unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
                         SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED |
                         SECBIT_KEEP_CAPS_LOCKED |
                         SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    return prctl(PR_SET_SECUREBITS, bits, 0, 0, 0);
}

int sbx_clear_ambient(void)
{
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == 0) return 0;
    return errno == EINVAL ? 0 : -1; /* kernel without ambient caps (< 4.3) */
}

/* Empty effective, permitted and inheritable sets. */
int sbx_clear_capabilities(void)
{
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = { { 0, 0, 0 } };
    return (int)syscall(SYS_capset, &header, data);
}
