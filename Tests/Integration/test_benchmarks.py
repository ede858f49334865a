"""The benchmarks fail when their result is wrong, saying what: the runtime's
(`make bench-runtime`) with its baseline missing or a grid not exact, the stream's (`make
bench-fanout`) with clients that cannot connect, the start-up benchmark's without its
in-process helper, and the merged report with a failed benchmark in it. And small runs that
are right report what they should: each side's records/s, CPU and records per CPU-second;
every change's visibility and the machine's CPU; the supervisor's own launch. Run against the debug build on small loads: what is
checked here is the harness, not the speed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from support.harness import AEROGRID, REPO, log

BENCH = AEROGRID.parent / "aerogrid-bench"


def bench(tmp_path, *arguments: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    report = tmp_path / "runtime.json"
    result = subprocess.run(
        [str(BENCH), "--only", "seed", "--orders", "20000", "--runs", "1", "--json", str(report), *arguments],
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
    assert report["failures"] == [] and report["parameters"]["orders"] == "20000" and report["commit"], report
    assert report["format"] == 1 and report["machine"]["nproc"] >= 1, report
    measures = {measure["name"]: measure for measure in report["measures"]}
    for side in ("bare consumer", "seed app at 1 CPU", "seed app at the default quota"):
        for what in ("records/s", "CPU-seconds", "records per CPU-second"):
            measure = measures[f"{side}, {what}"]
            assert len(measure["runs"]) == 1 and measure["median"] > 0, measure
    # CPU per side is what it says: records ÷ CPU-seconds.
    cpu = measures["bare consumer, CPU-seconds"]["median"]
    assert abs(measures["bare consumer, records per CPU-second"]["median"] - 20000 / cpu) < 1, measures
    # Each side of the comparison names the baseline side it stands next to.
    assert measures["seed app at 1 CPU, records per CPU-second"]["baseline"] == "bare consumer, records per CPU-second"
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


def test_the_fanout_benchmark_measures_every_change_and_the_machine(tmp_path):
    report_file = tmp_path / "fanout.json"
    result = fanout_bench("--clients", "5", "--runs", "2", "--json", str(report_file))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "per-change latency p99" in result.stdout and "machine CPU" in result.stdout, result.stdout
    report = json.loads(report_file.read_text())
    measures = {measure["name"]: measure for measure in report["measures"]}
    assert report["failures"] == [] and report["parameters"]["runs"] == "2", report
    for name in ("per-change latency p99", "machine CPU", "server CPU"):
        loaded = measures[f"5 clients, {name}"]
        assert len(loaded["runs"]) == 2 and loaded["min"] <= loaded["median"] <= loaded["max"], loaded
        assert loaded["baseline"] == f"1 client, {name}", loaded
    assert measures["5 clients, machine CPU"]["median"] > 0, measures


def test_the_fanout_benchmark_fails_when_clients_cannot_connect():
    result = fanout_bench("--clients", "20", "--runs", "1", "--test-hook", "too-few-connections")
    assert result.returncode != 0
    assert "could not connect" in result.stderr and "over quota" in result.stderr, result.stderr[-2000:]


def sandbox_startup(tmp_path, *arguments: str) -> tuple[subprocess.CompletedProcess, Path]:
    report = tmp_path / "startup.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "Benchmarks" / "sandbox_startup.py"), "--runs", "3", "--repeats", "2", "--warmup", "1",
         "--launcher", str(AEROGRID.parent / "aerogrid-sandbox"), "--launch-bench", str(AEROGRID.parent / "aerogrid-launch-bench"),
         "--json", str(report), *arguments],
        capture_output=True, text=True, timeout=300)
    log(f"sandbox_startup {' '.join(arguments)}: exit {result.returncode}\n{result.stdout[-2500:]}{result.stderr[-800:]}")
    return result, report


def test_the_startup_benchmark_measures_the_supervisors_own_launch(tmp_path):
    result, report_file = sandbox_startup(tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_file.read_text())
    measures = {measure["name"]: measure for measure in report["measures"]}
    for command in ("/bin/true", "python3 -S -c pass"):
        launch = measures[f"in-process launch, {command}, added"]
        # Two repeats, each a median of three interleaved runs; a sandbox costs something.
        assert len(launch["runs"]) == 2 and launch["median"] > 0, launch
        assert launch["baseline"] == f"in-process bare, {command}", launch
        assert measures[f"aerogrid-sandbox, {command}, added"]["median"] > 0, measures
    assert report["parameters"]["cleanup"] == "waited for, untimed", report


def test_the_startup_benchmark_fails_without_its_in_process_helper(tmp_path):
    result, report_file = sandbox_startup(tmp_path, "--launch-bench", str(tmp_path / "no-such-helper"))
    assert result.returncode != 0 and not report_file.exists()
    assert "no in-process helper" in result.stderr and "aerogrid-launch-bench" in result.stderr, result.stderr


def test_one_report_refuses_a_failed_benchmark(tmp_path):
    """make bench's merge: the reports become one file; one with failures never reaches it."""
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    measure = {"name": "x", "unit": "ms", "runs": [1.0, 2.0, 3.0], "min": 1.0, "median": 2.0, "max": 3.0}
    document = {"format": 1, "benchmark": "runtime", "command": "make bench-runtime", "commit": "abc", "date": "2026-12-07T00:00:00Z",
                "machine": {"nproc": 2, "cpu_model": "m", "kernel": "k", "cgroups": "v1"}, "parameters": {"runs": "3"},
                "measures": [measure], "failures": []}
    good.write_text(json.dumps(document))
    bad.write_text(json.dumps({**document, "benchmark": "fanout", "failures": ["2 of 5 clients could not connect"]}))
    merge = [sys.executable, str(REPO / "Benchmarks" / "report.py"), "--out", str(tmp_path / "report.json")]
    merged = subprocess.run([*merge, str(good)], capture_output=True, text=True, timeout=60)
    assert merged.returncode == 0, merged.stderr
    assert json.loads((tmp_path / "report.json").read_text())["benchmarks"][0]["measures"] == [measure]
    refused = subprocess.run([*merge, str(good), str(bad)], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "could not connect" in refused.stderr, refused.stderr
