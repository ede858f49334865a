"""The benchmarks fail when their result is wrong, saying what: the runtime's
(`make bench-runtime`) with its baseline missing or a grid not exact, the stream's (`make
bench-fanout`) with clients that cannot connect. And small runs that are right report what
they should: each side's records/s, CPU and records per CPU-second; every change's
visibility and the machine's CPU. Run against the debug build on small loads: what is
checked here is the harness, not the speed."""

from __future__ import annotations

import hashlib
import json
import subprocess

from support.harness import AEROGRID, REPO, log

BENCH = AEROGRID.parent / "aerogrid-bench"


def bench(tmp_path, *arguments: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    report = tmp_path / "runtime.json"
    result = subprocess.run(
        [str(BENCH), "--only", "seed", "--orders", "3000", "--runs", "1", "--json", str(report), *arguments],
        capture_output=True, text=True, timeout=300)
    log(f"aerogrid-bench {' '.join(arguments)}: exit {result.returncode}\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
    return result, json.loads(report.read_text()) if report.exists() else None


# The pinned baseline, shared/bench/bare_consumer.py: "use it as it is; do not weaken it".
PINNED_BASELINE_SHA256 = "2b45cb36ada5020390fafccd6e0152c53ea781b6881b87f7bef0f2ed2105d860"


def test_the_baseline_is_the_pinned_one_unchanged():
    copy = REPO / "Benchmarks" / "baseline" / "bare_consumer.py"
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == PINNED_BASELINE_SHA256, f"{copy} differs from the pinned baseline"
    original = REPO.parent / "shared" / "bench" / "bare_consumer.py"
    if original.exists():
        assert original.read_bytes() == copy.read_bytes(), f"{copy} differs from {original}"


def test_a_small_run_reports_both_sides_cpu(tmp_path):
    result, report = bench(tmp_path)
    assert result.returncode == 0, result.stderr
    assert report["failures"] == [] and report["orders"] == 3000 and report["commit"], report
    measures = {measure["name"]: measure for measure in report["measures"]}
    for side in ("bare consumer", "seed app at 1 CPU", "seed app at the default quota"):
        for what in ("records/s", "CPU-seconds", "records per CPU-second"):
            measure = measures[f"{side}, {what}"]
            assert len(measure["runs"]) == 1 and measure["median"] > 0, measure
    # CPU per side is what it says: records ÷ CPU-seconds.
    cpu = measures["bare consumer, CPU-seconds"]["median"]
    assert abs(measures["bare consumer, records per CPU-second"]["median"] - 3000 / cpu) < 1, measures
    assert "seed app at the default quota, throttled periods" in measures


def test_a_missing_baseline_fails_the_run(tmp_path):
    result, report = bench(tmp_path, "--baseline", str(tmp_path / "no_such_consumer.py"))
    assert result.returncode != 0
    assert "baseline" in result.stderr and "missing" in result.stderr, result.stderr
    assert report and report["failures"] and not report["measures"], report


def test_an_inexact_grid_fails_the_run(tmp_path):
    result, report = bench(tmp_path, "--test-hook", "inexact-grid")
    assert result.returncode != 0
    assert "not exact" in result.stderr, result.stderr
    assert report and any("not exact" in failure for failure in report["failures"]), report


FANOUT_BENCH = AEROGRID.parent / "aerogrid-fanout-bench"


def fanout_bench(*arguments: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(FANOUT_BENCH), "--seconds", "2", *arguments], capture_output=True, text=True, timeout=300)
    log(f"aerogrid-fanout-bench {' '.join(arguments)}: exit {result.returncode}\n{result.stdout[-1500:]}{result.stderr[-800:]}")
    return result


def test_the_fanout_benchmark_measures_every_change_and_the_machine():
    result = fanout_bench("--clients", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "per-change p50/p99" in result.stdout and "machine CPU" in result.stdout, result.stdout
    assert "5/5" in result.stdout, result.stdout


def test_the_fanout_benchmark_fails_when_clients_cannot_connect():
    result = fanout_bench("--clients", "20", "--test-hook", "too-few-connections")
    assert result.returncode != 0
    assert "could not connect" in result.stderr and "over quota" in result.stderr, result.stderr[-2000:]
