#!/bin/bash
# Verifies the C sandbox path for real on this machine: needs root, user
# namespaces, seccomp and a writable cgroup hierarchy (v1 or v2).
#   Tests/sandbox-c/test.sh          build, run every check, print PASS/FAIL
# Exit status 0 only if every check passed.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
B="$root/.build-c"
"$root/Tests/sandbox-c/build.sh" >/dev/null || exit 1
SBX_CFLAGS=-DSBX_NO_MOUNT_SETATTR SBX_OUT="$B/legacy" "$root/Tests/sandbox-c/build.sh" >/dev/null || exit 1

read -r PY_PREFIX PY_EXE < <(python3 -c 'import sys; print(sys.prefix, sys.executable)')
RUN="$B/sbx-run"
failures=0

pass() { printf 'PASS  %s\n' "$1"; }
fail() { printf 'FAIL  %s\n      got: %s\n' "$1" "$2"; failures=$((failures + 1)); }
# expect DESCRIPTION ACTUAL EXTENDED-REGEX
expect() { if [[ "$2" =~ $3 ]]; then pass "$1"; else fail "$1" "$2"; fi; }

echo "== the app's view (python3 -S under the test filter)"
inside=$("$RUN" --ipc --ro "$PY_PREFIX" --bundle "$root/Tests/sandbox-c" --tmp-size 8m \
    --env LANG=C.UTF-8 --env AEROGRID_TEST=1 -- "$PY_EXE" -S /app/inside.py 2>/dev/null)
field() { sed -n "s/^$1=//p" <<<"$inside" | head -1; }
expect "Seccomp: 2 (filter mode)" "$(field Seccomp)" '^2$'
expect "NoNewPrivs: 1" "$(field NoNewPrivs)" '^1$'
for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
    expect "$cap all zero" "$(field $cap)" '^0000000000000000$'
done
expect "no supplementary groups" "$(field Groups)" '^$'
for ns in user mnt pid net ipc uts cgroup; do
    host=$(readlink /proc/self/ns/$ns)
    got=$(field ns_$ns)
    if [[ -n "$got" && "$got" != "$host" ]]; then pass "$ns namespace differs ($got vs host $host)"
    else fail "$ns namespace differs" "$got (host $host)"; fi
done
expect "uid_map to unprivileged host uid 65534" "$(field uid_map)" '^0 65534 1$'
expect "gid_map to unprivileged host gid 65534" "$(field gid_map)" '^0 65534 1$'
expect "cgroup namespace rooted at its cgroup" "$(field cgroup_paths)" '^/$'
expect "app is pid 2 under init (pid 1)" "$(grep '^pid=' <<<"$inside")" '^pid=2 ppid=1$'
expect "hostname set" "$(field hostname)" '^aerogrid$'
expect "only fds 0-3" "$(field fds)" '^0,1,2,3$'
expect "environment is only what was passed" "$(field env)" '^AEROGRID_TEST,LANG,PATH$'
expect "socket(AF_INET) EPERM" "$(field socket_AF_INET)" '^EPERM$'
expect "socket(AF_INET6) EPERM" "$(field socket_AF_INET6)" '^EPERM$'
expect "socket(AF_NETLINK) EPERM" "$(field socket_AF_NETLINK)" '^EPERM$'
expect "socketpair(AF_UNIX) works" "$(field socket_unix)" '^ok$'
expect "write / EROFS" "$(field write_root)" '^EROFS$'
expect "write /app (bundle) EROFS" "$(field write_app)" '^EROFS$'
expect "write /usr EROFS" "$(field write_usr)" '^EROFS$'
expect "write the Python runtime EROFS" "$(field write_python)" '^EROFS$'
expect "/tmp fills up to its size (8m), then ENOSPC" "$(grep '^tmp_fill=' <<<"$inside")" '^tmp_fill=ENOSPC kb=8192$'
expect "IPC socket at fd 3 round-trips" "$(field ipc)" '^ping from the app$'
expect "json/asyncio/struct/dataclasses import" "$(field imports)" '^ok$'

echo "== hostile probes: unsandboxed (kernel's answer) vs sandboxed"
P="$B/probe"
SBX=("$RUN" --ipc --ro "$B" --bundle "$root/Tests/sandbox-c" --tmp-size 8m --nofile 64 --pids 32 --memory 64M --)
# A listener on the host's abstract socket namespace.
python3 -c '
import socket, time
s = socket.socket(socket.AF_UNIX); s.bind("\0aerogrid-probe-test"); s.listen(8); time.sleep(60)' &
listener=$!
sleep 0.3
# name | argument | expected sandboxed line (regex)
probes=(
    "socket-inet||result=errno errno=EPERM"
    "socket-inet6||result=errno errno=EPERM"
    "socket-netlink||result=errno errno=EPERM"
    "socket-packet||result=errno errno=EPERM"
    "socket-vsock||result=errno errno=EPERM"
    "socket-alg||result=errno errno=EPERM"
    "raw-socket||result=errno errno=EPERM"
    "abstract-unix-connect|aerogrid-probe-test|result=errno errno=ECONNREFUSED"
    "ptrace||result=errno errno=EPERM"
    "process-vm-writev||result=errno errno=EPERM"
    "pidfd-getfd||result=errno errno=EPERM"
    "kill-all||result=ok sent=1 visible=[34] signalable_others=1 own_children_killed=2"
    "unshare-newuser||result=errno errno=EPERM"
    "clone-newns||result=errno errno=EPERM"
    "clone3||result=errno errno=ENOSYS"
    "mount||result=errno errno=EPERM"
    "umount2||result=errno errno=EPERM"
    "pivot-root||result=errno errno=EPERM"
    "setns||result=errno errno=EPERM"
    "fsopen||result=errno errno=EPERM"
    "move-mount||result=errno errno=EPERM"
    "bpf||result=errno errno=EPERM"
    "perf-event-open||result=errno errno=EPERM"
    "userfaultfd||result=errno errno=EPERM"
    "io-uring-setup||result=errno errno=EPERM"
    "keyctl||result=errno errno=EPERM"
    "ioctl-tiocsti||result=errno errno=EPERM"
    "ioctl-tiocsti-highbits||result=errno errno=EPERM"
    "personality-rie||result=errno errno=EPERM"
    "list-fds||result=ok fds=0,1,2,3 count=4"
    "write-proc-self-exe||result=errno errno=EROFS"
    "write-path|/|result=errno errno=EROFS"
    "write-path|/usr|result=errno errno=EROFS"
    "write-path|$B|result=errno errno=EROFS"
    "read-etc-shadow||result=errno errno=ENOENT"
    "write-sys-fs-cgroup||result=errno errno=ENOENT"
    "capset||result=errno errno=EPERM"
    "chown||result=errno errno=EPERM"
    "mknod||result=errno errno=EPERM"
    "fill-tmp|64|result=errno errno=ENOSPC written_kb=8192"
    "nofile|4096|result=errno errno=EMFILE opened=6[01]"
    "fork-bomb|200|result=errno errno=EAGAIN forked=(2[0-9]|30)"
    "thread-bomb|200|result=errno errno=EAGAIN threads=(2[0-9]|30)"
    "print-env||result=ok count=1 names=PATH$"
    "ids||result=ok uid=0 gid=0 pid=2 ppid=1 groups=none"
)
for entry in "${probes[@]}"; do
    IFS='|' read -r name arg want <<<"$entry"
    unsandboxed=$("$P" "$name" $arg 2>&1)
    sandboxed=$("${SBX[@]}" "$P" "$name" $arg 2>/dev/null)
    label="$name${arg:+ $arg}"
    if [[ "$sandboxed" =~ $want ]] && [[ "$sandboxed" != "$unsandboxed" ]]; then
        pass "$label: ${sandboxed#probe=$name } (host: ${unsandboxed#probe=$name })"
    else
        fail "$label" "sandboxed [$sandboxed] unsandboxed [$unsandboxed]"
    fi
done
kill $listener 2>/dev/null; wait $listener 2>/dev/null

# The sandbox's PID 1 is its init, whose memory is a copy of the parent's.
# This host shields its own PID 1, so the baseline is a plain process of ours.
sleep 30 & other=$!
for what in environ mem; do
    unsandboxed=$("$P" read-proc1-$what $other)
    sandboxed=$("${SBX[@]}" "$P" read-proc1-$what 2>/dev/null)
    expect "read-proc1-$what: init is not dumpable (host, another process: ${unsandboxed#probe=read-proc1-$what })" \
        "$sandboxed" 'result=errno errno=EACCES'
done
kill $other; wait $other 2>/dev/null

# Probes whose sandboxed run ends in a kill: checked by exit status.
unsandboxed=$("$P" fsize 8388608)
sandboxed=$("$RUN" --ro "$B" --fsize 1m -- "$P" fsize 8388608 2>/dev/null)
expect "fsize: EFBIG at RLIMIT_FSIZE (host: ${unsandboxed#probe=fsize })" "$sandboxed" 'result=errno errno=EFBIG written=1048576'
for abi in x32-syscall i386-syscall; do
    unsandboxed=$("$P" $abi)
    "$RUN" --ro "$B" -- "$P" $abi >/dev/null 2>&1
    expect "$abi: killed by SIGSYS, init exits 159 (host: ${unsandboxed#probe=$abi })" "$?" '^159$'
done
"$RUN" --ro "$B" --memory 64M -- "$P" alloc-touch 256 >/dev/null 2>&1
expect "alloc-touch 256 MB under a 64 MB cgroup: SIGKILL (137)" "$?" '^137$'
# The bomb's own processes, not every process on the host (which other work changes).
probes_on_host() { ps -e --no-headers -o comm | grep -cx probe; }
procs_before=$(probes_on_host)
"$RUN" --ro "$B" --pids 16 -- "$P" fork-bomb 200 >/dev/null 2>&1
procs_after=$(probes_on_host)
expect "fork bomb leaves no process of its own on the host ($procs_before before)" "$procs_after" "^$procs_before\$"

# setuid: a root-owned setuid copy of the probe raises an unprivileged host
# process to euid 0; in the sandbox nosuid and no_new_privs keep it as is.
suid=$(mktemp -d /tmp/sbx-suid.XXXXXX)
chmod 755 "$suid"; cp "$P" "$suid/probe"; cp "$P" "$suid/probe-suid"; chmod 4755 "$suid/probe-suid"
unsandboxed=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$suid/probe" setuid-exec "$suid/probe-suid")
sandboxed=$("$RUN" --uid 1000 --ro "$suid" -- "$suid/probe" setuid-exec "$suid/probe-suid" 2>/dev/null)
expect "setuid exec gains nothing (host nobody: ${unsandboxed#probe=setuid-exec })" "$sandboxed" 'euid_before=1000 child=\[result=ok uid=1000 euid=1000 capeff=0000000000000000\]'
rm -rf "$suid"

echo "== init, signals and exit status"
"$RUN" --ro "$PY_PREFIX" -- "$PY_EXE" -S -c 'import time; time.sleep(30)' 2>/dev/null &
driver=$!; sleep 0.5
init=$(pgrep -P $driver)
kill -TERM "$init"; wait $driver
expect "SIGTERM to the init from outside ends the app: 128+15" "$?" '^143$'
report=$("$RUN" --report --ro "$PY_PREFIX" -- "$PY_EXE" -S -c 'import os, signal; os.kill(os.getpid(), signal.SIGTERM)' 2>&1)
expect "the app's own death by signal is reported as a signal" "$report" 'app killed by signal 15'
"$RUN" --ro "$PY_PREFIX" -- "$PY_EXE" -S -c 'import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(3)); time.sleep(30)' 2>/dev/null &
driver=$!; sleep 0.5
kill -TERM "$(pgrep -P $driver)"; wait $driver
expect "a handled SIGTERM: the app's exit code (3)" "$?" '^3$'
report=$("$RUN" --report -- /bin/sh -c 'exit 159' 2>&1)
expect "exit(159) is told apart from SIGSYS" "$report" 'app exited with 159'
"$RUN" --ro "$B" -- "$P" ignore-term-doublefork 30 >/dev/null 2>&1 &
driver=$!; sleep 0.5
init=$(pgrep -P $driver)
kill -TERM "$init"; sleep 0.3
alive=$(pgrep -f "probe ignore-term-doublefork" | wc -l)
kill -KILL "$init"; wait $driver; sleep 0.2
left=$(pgrep -f "probe ignore-term-doublefork" | wc -l)
expect "SIGTERM-ignoring double fork survives TERM ($alive left) but not SIGKILL of init" "$left" '^0$'
expect "init's command line is not the parent's" "$("$RUN" -- /bin/cat /proc/1/cmdline 2>/dev/null | tr -d '\0')" '^aerogrid-init$'

echo "== setup failures name the step"
expect "missing command" "$("$RUN" -- /nonexistent/cmd 2>&1)" 'setup failed at execve: ENOENT'
expect "missing mount source" "$("$RUN" --ro /nonexistent-dir -- /bin/true 2>&1)" 'setup failed at open mount source\[[0-9]+\] /nonexistent-dir: ENOENT'

echo "== pre-5.12 remount path (built with -DSBX_NO_MOUNT_SETATTR)"
L="$B/legacy/sbx-run"
expect "legacy: write /usr EROFS" "$("$L" --ro "$B" -- "$P" write-path /usr 2>&1)" 'result=errno errno=EROFS'
expect "legacy: python runs" "$("$L" --ro "$PY_PREFIX" -- "$PY_EXE" -S -c 'print("ok")' 2>&1)" '^ok$'
t=$(mktemp -d /tmp/sbx-locked.XXXXXX)
mount -t tmpfs -o noexec,nosuid,nodev,noatime tmpfs "$t"
expect "legacy: a bind of a noexec,noatime source keeps the locked flags" \
    "$("$L" --ro "$t" -- /bin/sh -c "grep ' $t ' /proc/self/mountinfo" 2>&1)" 'ro,nosuid,nodev,noexec,noatime'
mkdir "$t/sub"; mount -t tmpfs tmpfs "$t/sub"
expect "legacy: a source with a submount is refused, not half read-only" "$("$L" --ro "$t" -- /bin/true 2>&1)" 'EINVAL'
expect "current: the submount is read-only too" "$("$RUN" --ro "$t" --ro "$B" -- "$P" write-path "$t/sub" 2>&1)" 'errno=EROFS'
umount "$t/sub"; umount "$t"; rmdir "$t"

for c in /sys/fs/cgroup/*/aerogrid-test /sys/fs/cgroup/aerogrid-test; do rmdir "$c" 2>/dev/null; done
echo
if [ $failures -eq 0 ]; then echo "all checks passed"; else echo "$failures check(s) failed"; fi
exit $((failures > 0))
