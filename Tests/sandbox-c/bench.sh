#!/bin/bash
# Start-up cost of the sandbox: /bin/true and python3 -S -c pass, bare, under
# sbx-run (filter compiled per run, and precompiled as a launcher with a
# profile cache would), and under bubblewrap with equivalent mounts.
#   Tests/sandbox-c/bench.sh [RUNS]     (default 30; median of RUNS each)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
B="$root/.build-c"
runs=${1:-30}
"$root/Tests/sandbox-c/build.sh" >/dev/null
"$B/sbx-run" --save-bpf "$B/test-filter.bpf"
read -r PY_PREFIX PY_EXE < <(python3 -c 'import sys; print(sys.prefix, sys.executable)')

bwrap=(/usr/bin/bwrap --unshare-all --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/sbin /sbin
       --symlink usr/lib /lib --symlink usr/lib64 /lib64 --ro-bind /etc/ld.so.cache /etc/ld.so.cache
       --ro-bind "$PY_PREFIX" "$PY_PREFIX" --proc /proc --dev /dev --tmpfs /tmp --dir /app --chdir /app
       --cap-drop ALL --clearenv --setenv PATH /usr/bin:/bin --)
sbx=("$B/sbx-run" --ro "$PY_PREFIX" --)
sbx_pre=("$B/sbx-run" --bpf "$B/test-filter.bpf" --ro "$PY_PREFIX" --)

median() { "$B/bench" "$runs" -- "$@" | sed 's/^median_ms=\([0-9.]*\).*/\1/'; }
printf '%-26s %8s %8s %8s %8s %14s %14s\n' command bare sbx-run sbx-pre bwrap "added sbx/pre" "added bwrap"
for cmd in "/bin/true" "$PY_EXE -S -c pass"; do
    read -ra c <<<"$cmd"
    bare=$(median "${c[@]}")
    s=$(median "${sbx[@]}" "${c[@]}")
    p=$(median "${sbx_pre[@]}" "${c[@]}")
    w=$(median "${bwrap[@]}" "${c[@]}")
    label=$([ "$cmd" = /bin/true ] && echo /bin/true || echo "python3 -S -c pass")
    printf '%-26s %8s %8s %8s %8s %6.2f / %5.2f %14.2f\n' "$label" "$bare" "$s" "$p" "$w" \
        "$(echo "$s - $bare" | bc)" "$(echo "$p - $bare" | bc)" "$(echo "$w - $bare" | bc)"
done
echo "(ms, median of $runs runs; sbx-pre = precompiled filter)"
