#!/usr/bin/env python3
"""One report from every benchmark's (`make bench`): merges the reports the benchmarks
wrote (.build/bench/*.json, the format of Benchmarks/bench_report.py) into one file,
.build/bench/report.json, prints each measure's median, and with --docs rewrites the
results tables of docs/performance.md from it: medians with their range over the runs,
each table naming the command, commit and machine its numbers come from.

    python3 Benchmarks/report.py [--out FILE] [--docs docs/performance.md] [REPORT.json ...]

A report with failures, or in a format this script does not know, is refused (exit 1): a
wrong result never reaches the docs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path

import bench_report

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".build" / "bench"
# The order of `make bench`, and of the merged report.
BENCHMARKS = ("runtime", "sandbox-startup", "fanout", "soak", "cluster")


def fail(message: str) -> None:
    print(f"report: {message}", file=sys.stderr)
    sys.exit(1)


def load(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        fail(f"cannot read {path}: {error}")
    if document.get("format") != bench_report.FORMAT:
        fail(f"{path} is in format {document.get('format')!r}, this script reads {bench_report.FORMAT}: rerun its benchmark")
    if document.get("failures"):
        fail(f"{path} ({document.get('command')}) failed: {'; '.join(document['failures'])}")
    return document


def number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(document: dict) -> str:
    """The results table of one benchmark, in Markdown."""
    machine = document["machine"]
    runs = document["parameters"].get("repeats") or document["parameters"].get("runs") or "?"
    lines = [
        f"Measured by `{document['command']}` on commit {document['commit']}, {document['date'][:10]}: "
        f"{machine['nproc']} CPUs ({machine['cpu_model']}), Linux {machine['kernel']}, cgroup {machine['cgroups']}; "
        f"medians of {runs} runs (a measure with one value ran once). Parameters: "
        + ", ".join(f"{key} {value}" for key, value in sorted(document["parameters"].items())) + ".",
        "",
        "| measure | median | min – max | compared with (its median) |",
        "|---|---:|---:|---|",
    ]
    medians = {m["name"]: m for m in document["measures"]}
    for m in document["measures"]:
        baseline = medians.get(m.get("baseline") or "")
        compared = f"{baseline['name']} ({number(baseline['median'])} {baseline['unit']})" if baseline else ""
        lines.append(f"| {m['name']} | {number(m['median'])} {m['unit']} | {number(m['min'])} – {number(m['max'])} | {compared} |")
    return "\n".join(lines)


def rewrite_docs(path: Path, documents: dict[str, dict]) -> None:
    """Replaces each `<!-- results: NAME -->` … `<!-- end results -->` block with NAME's table."""
    text = path.read_text()
    pattern = re.compile(r"(<!-- results: ([a-z-]+) -->\n)(.*?)(<!-- end results -->)", re.S)
    found = set()

    def replace(match: re.Match) -> str:
        name = match.group(2)
        found.add(name)
        if name not in documents:
            return match.group(0)  # not measured this time: the block stays as it was
        return f"{match.group(1)}{table(documents[name])}\n{match.group(4)}"

    text = pattern.sub(replace, text)
    missing = [name for name in documents if name not in found]
    if missing:
        fail(f"{path} has no results block for {', '.join(missing)}")
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="*", type=Path,
                        help="the benchmarks' reports (default: .build/bench/NAME.json for each benchmark present)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "report.json")
    parser.add_argument("--docs", type=Path, help="rewrite the results tables of this file (docs/performance.md)")
    args = parser.parse_args()
    paths = args.reports or [BENCH_DIR / f"{name}.json" for name in BENCHMARKS if (BENCH_DIR / f"{name}.json").exists()]
    if not paths:
        fail(f"no reports in {BENCH_DIR}: run `make bench` (or one of its parts) first")
    documents = {}
    for path in paths:
        document = load(path)
        documents[document["benchmark"]] = document
    merged = {
        "format": bench_report.FORMAT,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "commits": sorted({d["commit"] for d in documents.values()}),
        "machine": bench_report.machine(),
        "benchmarks": [documents[name] for name in BENCHMARKS if name in documents]
        + [d for name, d in documents.items() if name not in BENCHMARKS],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bench_report.write(merged, str(args.out))
    for document in merged["benchmarks"]:
        print(f"\n{document['benchmark']} ({document['command']}, commit {document['commit']})")
        for m in document["measures"]:
            print(f"  {m['name']:<66} {number(m['median']):>10} {m['unit']:<14} {number(m['min'])} – {number(m['max'])}")
    print(f"\nreport: {args.out}")
    if args.docs:
        rewrite_docs(args.docs, documents)
        print(f"docs: {args.docs} rewritten from it")


if __name__ == "__main__":
    main()
