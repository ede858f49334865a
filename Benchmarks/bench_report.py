"""The one result format of every benchmark, for the Python ones (sandbox_startup.py,
soak.py); Benchmarks/BenchReport/BenchReport.swift writes the same fields for the Swift
ones. Each measure keeps every run's value with min, median and max and names the baseline
measure it is compared with; `make bench` merges the reports (Benchmarks/report.py)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess

# The version of this format: a reader refuses one it does not know.
FORMAT = 1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(name: str, unit: str, runs: list[float], baseline: str | None = None) -> dict:
    """One measure over the runs: every value, min, median, max, and what it is compared with."""
    entry = {"name": name, "unit": unit, "runs": list(runs), "min": min(runs), "median": statistics.median(runs), "max": max(runs)}
    if baseline is not None:
        entry["baseline"] = baseline
    return entry


def machine() -> dict:
    """What the benchmark ran on: CPUs, their model, the kernel and the cgroup version."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        cgroups = "v2"
    elif os.path.isdir("/sys/fs/cgroup/memory"):
        cgroups = "v1"
    else:
        cgroups = "none found"
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "kernel": platform.release(), "cgroups": cgroups}


def commit() -> str:
    """The commit measured, and whether the tree differs from it."""
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' (with uncommitted changes)' if dirty else ''}"


def report(benchmark: str, command: str, parameters: dict, measures: list[dict], failures: list[str], **extra) -> dict:
    """A benchmark's whole result; `extra` holds what only this benchmark records."""
    return {
        "format": FORMAT,
        "benchmark": benchmark,
        "command": command,
        "commit": commit(),
        "machine": machine(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "parameters": {key: str(value) for key, value in parameters.items()},
        "measures": measures,
        "failures": failures,
        **extra,
    }


def write(document: dict, path: str) -> None:
    with open(path, "w") as out:
        json.dump(document, out, indent=2, sort_keys=True)
        out.write("\n")
