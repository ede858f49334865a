#!/bin/sh
# Builds CSandboxSys, the test driver, the probes and the benchmark with gcc,
# into .build-c/ at the repository root (ignored by git).
#   Tests/sandbox-c/build.sh            normal build
#   SBX_CFLAGS=-DSBX_NO_MOUNT_SETATTR SBX_OUT=.build-c/legacy \
#       Tests/sandbox-c/build.sh       to exercise the pre-5.12 remount path
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out="${SBX_OUT:-$root/.build-c}"
src="$root/Sources/CSandboxSys"
CC=${CC:-gcc}
CFLAGS="-std=gnu11 -Wall -Wextra -Werror -O2 ${SBX_CFLAGS:-}"
mkdir -p "$out/obj"

objs=""
for f in "$src"/*.c; do
    o="$out/obj/$(basename "${f%.c}").o"
    $CC $CFLAGS -I"$src/include" -c "$f" -o "$o"
    objs="$objs $o"
done
rm -f "$out/libCSandboxSys.a"
ar rcs "$out/libCSandboxSys.a" $objs

$CC $CFLAGS -I"$src/include" "$root/Tests/sandbox-c/sbx-run.c" "$out/libCSandboxSys.a" \
    $(pkg-config --libs libseccomp) -o "$out/sbx-run"
$CC $CFLAGS "$root/Tests/sandbox-c/bench.c" -o "$out/bench"
$CC $CFLAGS "$root/Tests/SandboxProbes/probe.c" -lpthread -o "$out/probe"
echo "built: $out/sbx-run $out/probe $out/bench"
