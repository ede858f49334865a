#!/usr/bin/env python3
"""Start-up cost of the AeroGrid sandbox, side by side with bubblewrap.

Measures the wall time from start to exit (time.perf_counter around subprocess.run) of

  1. /bin/true
  2. python3 -S -c pass   (the real interpreter, not a pyenv shim)

each run three ways:

  bare      the command alone, with the empty environment the sandboxes give it
  aerogrid  aerogrid-sandbox run --profile sandbox-profiles/python.json -- COMMAND
            (a fresh cgroup per run, the profile's seccomp filter, 7 namespaces,
            tmpfs root with read-only binds, the init; everything a tenant app gets)
  bwrap     Debian's bubblewrap with --unshare-all and the equivalent read-only binds,
            /proc, /dev, tmpfs /tmp, --cap-drop ALL, --clearenv (no cgroup, no seccomp)

and two ways from inside one process (aerogrid-launch-bench, Benchmarks/LaunchBench), timed
there:

  in-process bare      posix_spawn + waitpid
  in-process launch    Sandbox.launch with the spec the supervisor gives an app (its cgroup
            at tenant/app, pipes, the IPC socket) and SandboxedProcess.wait(), which
            returns once the sandbox is gone and its cgroup removed: what a start costs
            the supervisor, clean-up included

The ten variants are interleaved, each round in its own random order drawn from --seed
(printed, so a run can be repeated), so that noise and any effect of one variant on the
next spread over all of them; a few untimed warm-up runs come first. The whole measure is
repeated (--repeats, 3 by default, seeds --seed, --seed + 1, ...): each repeat gives every
variant's added time (its median minus its bare median), and the report gives the
median of the repeats with their min and max. A run that does not
exit 0 is an error, not a number. The launcher leaves its cgroup to a helper that removes
it after the launcher exits: by default that clean-up is waited for, untimed, before the
next run (so it slows no one else's run), and with --charge-cleanup it is part of the
launcher's time (back to back: the run ends when its cgroup is gone). Needs root for the
cgroups (as the launcher does in production); stdlib only.

    python3 Benchmarks/sandbox_startup.py [--runs 40] [--repeats 3] [--seed N] [--charge-cleanup] [--json FILE]
    make bench-sandbox        # builds the release launcher first
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
from typing import NoReturn

import bench_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("bare", "aerogrid", "bwrap", "inproc-bare", "inproc")
VARIANT_LABELS = {
    "bare": "bare",
    "aerogrid": "aerogrid-sandbox",
    "bwrap": "bwrap",
    "inproc-bare": "in-process bare",
    "inproc": "in-process launch",
}
# A start that takes longer than this has hung: the benchmark fails instead of waiting.
RUN_DEADLINE_S = 30
# What each variant's added time is measured against.
BASELINE = {"bare": "bare", "aerogrid": "bare", "bwrap": "bare", "inproc-bare": "inproc-bare", "inproc": "inproc-bare"}


def fail(message: str) -> NoReturn:
    sys.stdout.flush()
    print(f"sandbox_startup: {message}", file=sys.stderr)
    sys.exit(1)


def describe_status(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited {code}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40,
                        help="timed runs of each variant per repeat (default 40; the method asks for at least 30)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="how many times the whole measure is taken (default 3; the report gives min, median, max)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed runs of each variant first (default 3)")
    parser.add_argument("--launcher", default=os.path.join(ROOT, ".build", "release", "aerogrid-sandbox"),
                        help="the aerogrid-sandbox binary (default: the release build)")
    parser.add_argument("--launch-bench", default=os.path.join(ROOT, ".build", "release", "aerogrid-launch-bench"),
                        help="the in-process helper, aerogrid-launch-bench (default: the release build)")
    parser.add_argument("--profile", default=os.path.join(ROOT, "sandbox-profiles", "python.json"),
                        help="seccomp profile for the launcher (default: sandbox-profiles/python.json)")
    parser.add_argument("--python", default=None,
                        help="interpreter to measure (default: the real path of the one running this script)")
    parser.add_argument("--bwrap", default=shutil.which("bwrap") or "/usr/bin/bwrap",
                        help="bubblewrap binary (Debian: apt-get install bubblewrap)")
    parser.add_argument("--json", metavar="FILE", help="also write every number to FILE as JSON")
    parser.add_argument("--seed", type=int, default=1, help="seed of each round's random order (default 1)")
    parser.add_argument("--charge-cleanup", action="store_true",
                        help="count the launcher's deferred cgroup clean-up in its time (default: wait for it untimed)")
    parser.add_argument("--keep-going", action="store_true",
                        help="diagnosis only: on a failed run, count it, leave it out of the numbers and "
                             "go on; the script still exits 1 if any run failed")
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.repeats < 1:
        parser.error("--runs and --repeats must be at least 1 and --warmup at least 0")
    return args


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def interpreter(requested: str | None) -> tuple[str, str]:
    """The real interpreter binary and its prefix (sys.base_prefix), shims and links followed."""
    exe = requested or sys.executable
    out = subprocess.run(
        [exe, "-I", "-S", "-c", "import sys; print(sys.executable); print(sys.base_prefix)"],
        capture_output=True, text=True, check=True)
    executable, prefix = out.stdout.split("\n")[:2]
    return os.path.realpath(executable), os.path.realpath(prefix)


def bwrap_argv(bwrap: str, python_prefix: str) -> list[str]:
    """bubblewrap with what aerogrid-sandbox mounts: /usr and the merged-/usr links as this
    host has them, /etc/ld.so.cache, the interpreter's prefix, /proc, /dev, /tmp, /app."""
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
    for link in ("/bin", "/sbin", "/lib", "/lib64"):
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    if os.path.exists("/etc/ld.so.cache"):
        argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    if python_prefix not in ("/usr", "/usr/local") and not python_prefix.startswith("/usr/"):
        argv += ["--ro-bind", python_prefix, python_prefix]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/app", "--chdir", "/app",
             "--cap-drop", "ALL", "--clearenv", "--"]
    return argv


def leftover_sandbox_cgroups() -> list[str]:
    """The launcher's own cgroups (aerogrid/sandbox-*) still there, under cgroup v2's
    mount or any v1 controller's."""
    roots = ["/sys/fs/cgroup/aerogrid"]
    try:
        roots += [os.path.join("/sys/fs/cgroup", c, "aerogrid") for c in os.listdir("/sys/fs/cgroup")]
    except OSError:
        pass
    found = []
    for root in roots:
        try:
            found += [os.path.join(root, n) for n in os.listdir(root) if n.startswith("sandbox-")]
        except OSError:
            continue
    return found


def wait_for_cleanup(deadline_s: float = 10.0) -> None:
    """Until the launcher's clean-up helper has removed its cgroup (it runs after the
    launcher exits); a clean-up that never comes fails the benchmark."""
    give_up = time.perf_counter() + deadline_s
    while leftover_sandbox_cgroups():
        if time.perf_counter() > give_up:
            fail(f"the launcher's cgroups were not removed within {deadline_s:.0f} s: {leftover_sandbox_cgroups()[:3]}")
        time.sleep(0.0002)


def run_once(argv: list[str], env: dict, cleanup: str = "none") -> tuple[float, int]:
    """One run's wall time. `cleanup`: "none" (not the launcher), "wait" (the launcher's
    deferred clean-up waited for after the clock stops), "charge" (before it stops)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env, timeout=RUN_DEADLINE_S)
    except subprocess.TimeoutExpired:
        fail(f"{' '.join(argv)} did not exit within {RUN_DEADLINE_S} s")
    if cleanup == "charge":
        wait_for_cleanup()
    seconds = time.perf_counter() - start
    if cleanup == "wait":
        wait_for_cleanup()
    return seconds, done.returncode


def check_run(name: str, argv: list[str], env: dict) -> int:
    """An untimed run with output captured: it must print nothing on stderr (the launcher
    warns there when it runs without cgroups). Returns its status; a failure's output is
    shown."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=RUN_DEADLINE_S)
    except subprocess.TimeoutExpired:
        fail(f"{name} did not exit within {RUN_DEADLINE_S} s: {' '.join(argv)}")
    if done.returncode != 0:
        sys.stdout.flush()
        print(f"sandbox_startup: {name} {describe_status(done.returncode)}: {' '.join(argv)}", file=sys.stderr)
        lines = done.stderr.strip().splitlines()
        if lines:
            print("  " + "\n  ".join(lines[-12:]), file=sys.stderr)
        return done.returncode
    if done.stderr.strip():
        fail(f"{name} wrote to stderr (a degraded sandbox is not what we measure): {done.stderr.strip()}")
    return 0


def quantile(samples: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class InProcess:
    """aerogrid-launch-bench, started once: each request is one start timed inside it."""

    def __init__(self, binary: str, profile: str) -> None:
        self.process = subprocess.Popen([binary, "--profile", profile], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, bufsize=1)

    def run(self, variant: str, argv: list[str], deadline_s: float = 30.0) -> tuple[float, int]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps({"variant": variant, "argv": argv}) + "\n")
        self.process.stdin.flush()
        ready = select.select([self.process.stdout], [], [], deadline_s)[0]
        line = self.process.stdout.readline() if ready else ""
        if not line:
            fail(f"aerogrid-launch-bench gave no answer within {deadline_s:.0f} s to {variant} {' '.join(argv)}")
        reply = json.loads(line)
        if reply.get("error"):
            fail(f"in-process {variant} {' '.join(argv)}: {reply['error']}")
        return reply["ms"] / 1000, reply["status"]

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def main() -> None:
    args = parse_args()
    if not os.access(args.launcher, os.X_OK):
        fail(f"no launcher at {args.launcher}: build it with "
             "`swift build -c release --product aerogrid-sandbox` (or run `make bench-sandbox`)")
    if not os.access(args.launch_bench, os.X_OK):
        fail(f"no in-process helper at {args.launch_bench}: build it with "
             "`swift build -c release --product aerogrid-launch-bench` (or run `make bench-sandbox`)")
    if not os.access(args.bwrap, os.X_OK):
        fail(f"no bubblewrap at {args.bwrap}: apt-get install bubblewrap")
    if not os.path.isfile(args.profile):
        fail(f"no profile at {args.profile}")
    python, prefix = interpreter(args.python)

    commands = {
        "/bin/true": ["/bin/true"],
        "python3 -S -c pass": [python, "-S", "-c", "pass"],
    }
    launchers = {
        "bare": [],
        "aerogrid": [args.launcher, "run", "--profile", args.profile, "--"],
        "bwrap": bwrap_argv(args.bwrap, prefix),
        "inproc-bare": [],
        "inproc": [],
    }
    # The sandboxes give the app an empty environment; bare runs get the same. The
    # launchers themselves run with ours (as an operator would start them).
    envs = {"bare": {}, "aerogrid": dict(os.environ), "bwrap": dict(os.environ), "inproc-bare": {}, "inproc": {}}
    cases = [(command, variant) for command in commands for variant in VARIANTS]
    argvs = {(c, v): launchers[v] + commands[c] for c, v in cases}
    in_process = InProcess(args.launch_bench, args.profile)

    def run_case(case: tuple[str, str], cleanup: str) -> tuple[float, int]:
        variant = case[1]
        if variant in ("inproc-bare", "inproc"):
            return in_process.run("bare" if variant == "inproc-bare" else "sandbox", argvs[case])
        return run_once(argvs[case], envs[variant], cleanup if variant == "aerogrid" else "none")

    host = {**bench_report.machine(), "euid": os.geteuid()}
    now = datetime.datetime.now(datetime.UTC).astimezone()
    measured = bench_report.commit()
    print(f"sandbox start-up, {now.strftime('%Y-%m-%d %H:%M:%S %Z')}, commit {measured}")
    print(f"machine: {host['nproc']} CPUs ({host['cpu_model']}), Linux {host['kernel']}, "
          f"cgroup {host['cgroups']}, euid {host['euid']}")
    versions = {
        "python": f"{python} ({platform.python_version() if args.python is None else tool_version([python, '-V'])})",
        "bwrap": tool_version([args.bwrap, "--version"]),
        "launcher": os.path.realpath(args.launcher),
        "launch_bench": os.path.realpath(args.launch_bench),
        "profile": os.path.relpath(args.profile, ROOT),
    }
    print(f"python: {versions['python']}; {versions['bwrap']}")
    print(f"launcher: {versions['launcher']} --profile {versions['profile']}")
    if host["euid"] != 0:
        print("note: not root, so aerogrid-sandbox cannot create cgroups; the numbers are not the full profile's")
    if args.runs < 30:
        print(f"note: {args.runs} runs per variant; the method asks for at least 30")

    failures: dict[tuple[str, str], list[str]] = {case: [] for case in cases}
    attempts = dict.fromkeys(cases, 0)

    def failed(case: tuple[str, str], what: str, code: int) -> None:
        message = f"{what}: {VARIANT_LABELS[case[1]]} {case[0]} {describe_status(code)}"
        if not args.keep_going:
            fail(f"{message}\n  {' '.join(argvs[case])}")
        failures[case].append(describe_status(code))
        print(f"FAILED {message}", file=sys.stderr)

    # Warm-up: one run of each with its output checked (until one succeeds, with
    # --keep-going), then untimed runs, then the timed rounds.
    for case in cases:
        for _ in range(10):
            attempts[case] += 1
            if case[1] in ("inproc-bare", "inproc"):
                code = run_case(case, "none")[1]  # the helper itself refuses a degraded sandbox
            else:
                code = check_run(f"{VARIANT_LABELS[case[1]]} {case[0]}", argvs[case], envs[case[1]])
            if code == 0:
                break
            failed(case, "warm-up 1", code)
        else:
            fail(f"{VARIANT_LABELS[case[1]]} {case[0]}: ten failed runs in a row")
    for warmup in range(max(args.warmup - 1, 0)):
        for case in cases:
            attempts[case] += 1
            _, code = run_case(case, "wait")
            if code != 0:
                failed(case, f"warm-up {warmup + 2}", code)

    cleanup_mode = "charge" if args.charge_cleanup else "wait"
    print(f"order: seeded random per round (--seed {args.seed}, then +1 per repeat); the launcher's clean-up: "
          f"{'counted in its time' if args.charge_cleanup else 'waited for, untimed, before the next run'}; "
          "in-process: counted (the wait returns once the cgroup is gone)")
    wait_for_cleanup()
    samples: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    failed_ms: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    # Each repeat: rounds until every variant has --runs good samples (only --keep-going
    # can make that take more than --runs rounds), each round's order drawn from its seed.
    repeats: list[dict[tuple[str, str], dict]] = []
    for repeat in range(args.repeats):
        order = random.Random(args.seed + repeat)
        taken: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
        round_index = -1
        while any(len(taken[case]) < args.runs for case in cases):
            round_index += 1
            if round_index >= 4 * args.runs:
                break
            for case in order.sample(cases, len(cases)):
                attempts[case] += 1
                seconds, code = run_case(case, cleanup_mode)
                if code != 0:
                    failed(case, f"repeat {repeat + 1}, run {round_index + 1}", code)
                    failed_ms[case].append(seconds * 1000)
                    continue
                taken[case].append(seconds * 1000)
        for case in cases:
            if len(taken[case]) < 2:
                fail(f"{VARIANT_LABELS[case[1]]} {case[0]}: too few successful runs to measure")
            samples[case] += taken[case]
        repeats.append(summarise(commands, taken))
    in_process.close()

    print()
    print(f"{'command':<20} {'variant':<19} {'median ms':>9} {'p90 ms':>8} {'added ms (min – max)':>22}")
    results = {}
    for command, variant in cases:
        per_repeat = [r[(command, variant)] for r in repeats]
        result = {
            "runs": sum(r["runs"] for r in per_repeat),
            "median_ms": statistics.median(r["median_ms"] for r in per_repeat),
            "p90_ms": statistics.median(r["p90_ms"] for r in per_repeat),
            "added_ms": statistics.median(r["added_ms"] for r in per_repeat),
            "added_ms_min": min(r["added_ms"] for r in per_repeat),
            "added_ms_max": max(r["added_ms"] for r in per_repeat),
            "repeats": per_repeat,
        }
        results[(command, variant)] = result
        added = "—" if BASELINE[variant] == variant else (
            f"{result['added_ms']:+.2f} ({result['added_ms_min']:+.2f} – {result['added_ms_max']:+.2f})")
        print(f"{command:<20} {VARIANT_LABELS[variant]:<19} {result['median_ms']:9.2f} {result['p90_ms']:8.2f} {added:>22}")
    print(f"({args.repeats} repeats of {args.runs} runs each, interleaved in a seeded random order from --seed {args.seed}; "
          "medians of the repeats; added = median minus the bare median of the same repeat, "
          "in-process against in-process bare)")
    print()
    verdicts = {}
    for command in commands:
        ours = results[(command, "aerogrid")]["added_ms"]
        theirs = results[(command, "bwrap")]["added_ms"]
        met = ours <= 5.0 and ours < theirs
        verdicts[command] = met
        print(f"{command}: aerogrid-sandbox adds {ours:.2f} ms, bwrap adds {theirs:.2f} ms, "
              f"Sandbox.launch in the supervisor {results[(command, 'inproc')]['added_ms']:.2f} ms "
              f"(target ≤ 5 ms and below bwrap: {'met' if met else 'missed'})")

    if args.json:
        # The bare runs' own times, then what each other variant adds to its bare run.
        measures = [
            bench_report.measure(f"{VARIANT_LABELS[variant]}, {command}", "ms", [r[(command, variant)]["median_ms"] for r in repeats])
            if BASELINE[variant] == variant else
            bench_report.measure(f"{VARIANT_LABELS[variant]}, {command}, added", "ms",
                                 [r[(command, variant)]["added_ms"] for r in repeats],
                                 baseline=f"{VARIANT_LABELS[BASELINE[variant]]}, {command}")
            for command, variant in cases
        ]
        document = bench_report.report(
            "sandbox-startup", "make bench-sandbox",
            {"runs": args.runs, "repeats": args.repeats, "warmup": args.warmup, "seed": args.seed,
             "cleanup": "charged to the launcher" if args.charge_cleanup else "waited for, untimed"},
            measures,
            [f"{VARIANT_LABELS[v]} {c}: {len(failures[(c, v)])} failed runs" for c, v in cases if failures[(c, v)]],
            euid=host["euid"],
            versions=versions,
            argv={f"{c} | {v}": argvs[(c, v)] for c, v in cases},
            results={c: {v: results[(c, v)] for v in VARIANTS} for c in commands},
            samples_ms={c: {v: samples[(c, v)] for v in VARIANTS} for c in commands},
            target_met=verdicts,
            failed_runs={c: {v: failures[(c, v)] for v in VARIANTS} for c in commands},
            attempts={c: {v: attempts[(c, v)] for v in VARIANTS} for c in commands},
            failed_ms={c: {v: failed_ms[(c, v)] for v in VARIANTS} for c in commands},
        )
        bench_report.write(document, args.json)

    failed_total = sum(len(f) for f in failures.values())
    if failed_total:
        print()
        print(f"FAILED: {failed_total} runs did not exit 0 and are left out of the numbers above:")
        for (command, variant), statuses in failures.items():
            if statuses:
                kinds = ", ".join(f"{statuses.count(k)}× {k}" for k in sorted(set(statuses)))
                print(f"  {VARIANT_LABELS[variant]} {command}: {kinds} "
                      f"in {attempts[(command, variant)]} runs (timed and warm-up)")
        sys.exit(1)


def summarise(commands: dict, taken: dict[tuple[str, str], list[float]]) -> dict[tuple[str, str], dict]:
    """One repeat's numbers per variant: median, p90, min, and the time added to its baseline."""
    summary = {}
    for command in commands:
        for variant in VARIANTS:
            data = taken[(command, variant)]
            median = statistics.median(data)
            baseline = statistics.median(taken[(command, BASELINE[variant])])
            summary[(command, variant)] = {
                "runs": len(data),
                "median_ms": median,
                "p90_ms": quantile(data, 0.9),
                "min_ms": min(data),
                "added_ms": median - baseline,
                "ratio": median / baseline,
            }
    return summary


if __name__ == "__main__":
    main()
