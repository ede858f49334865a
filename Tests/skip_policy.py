"""A pytest plugin every suite runs with (`-p skip_policy`, see the Makefile): a test that
skips says so loudly, with the reason, and in CI (`CI` set to true or 1) any skip fails the
run unless `Tests/allowed-skips.txt` lists it with its reason. A suite that cannot run its
prerequisites must not pass by skipping.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

ALLOWED = Path(__file__).resolve().parent / "allowed-skips.txt"
_skipped: list = []


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def allowed_skips() -> list:
    """(node id pattern, reason) pairs: `PATTERN  # why` per line, blank lines and lines
    starting with # ignored. A pattern is matched against the test's node id with fnmatch."""
    found = []
    for line in ALLOWED.read_text().splitlines() if ALLOWED.exists() else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, reason = line.partition("#")
        if not reason.strip():
            raise ValueError(f"{ALLOWED}: every allowed skip needs its reason after '#': {line!r}")
        found.append((pattern.strip(), reason.strip()))
    return found


def pytest_runtest_logreport(report):
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session, exitstatus):
    if not _skipped:
        return
    allowed = allowed_skips()
    unexpected = [(node, reason) for node, reason in _skipped
                  if not any(fnmatch.fnmatch(node, pattern) for pattern, _ in allowed)]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter else print
    reasons: dict = {}
    for node, reason in unexpected:
        reasons.setdefault(reason, []).append(node)
    if unexpected:
        write("")
        write("=" * 78)
        write(f"SKIPPED {len(unexpected)} test(s) that should have run:")
        for reason, nodes in reasons.items():
            write(f"  {reason}  ({len(nodes)}: {nodes[0]}{' …' if len(nodes) > 1 else ''})")
        if in_ci():
            write("CI is set: a skip not listed in Tests/allowed-skips.txt fails the run.")
        else:
            write("Install what is missing (scripts/setup) and run again; in CI these fail the run.")
        write("=" * 78)
        if in_ci() and session.exitstatus == 0:
            session.exitstatus = 1
