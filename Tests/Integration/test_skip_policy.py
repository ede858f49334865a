"""Tests/skip_policy.py, the plugin every pytest suite here runs with: in CI a skip not
listed in Tests/allowed-skips.txt fails the run, and anywhere a skip says what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def run(directory: Path, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(TESTS)
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "skip_policy", "-p", "no:cacheprovider", str(directory)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_a_skip_fails_in_ci_and_is_loud_elsewhere(tmp_path):
    (tmp_path / "test_needs.py").write_text(
        "import pytest\n\ndef test_runs():\n    pass\n\ndef test_needs_a_tool():\n    pytest.skip('needs frobnicate (apt-get install frobnicate)')\n")
    local = run(tmp_path, ci=False)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "SKIPPED 1 test(s) that should have run" in local.stdout and "needs frobnicate" in local.stdout, local.stdout
    ci = run(tmp_path, ci=True)
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "needs frobnicate" in ci.stdout and "fails the run" in ci.stdout, ci.stdout


def test_a_run_without_skips_passes_in_ci(tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_runs():\n    assert 1 + 1 == 2\n")
    ci = run(tmp_path, ci=True)
    assert ci.returncode == 0 and "SKIPPED" not in ci.stdout, ci.stdout + ci.stderr


def test_every_allowed_skip_has_its_reason():
    import skip_policy  # noqa: PLC0415 - on PYTHONPATH through the Makefile
    for pattern, reason in skip_policy.allowed_skips():
        assert pattern and len(reason) >= 10, (pattern, reason)
