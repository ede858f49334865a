"""The pytest plugin every suite runs with (`-p support.plugin`, see the Makefile): the
fixtures the suites share.

- `needs` and `prerequisites`: a suite's conftest.py overrides `needs` with what its tests
  need of the machine (support/prerequisites.py); when any of it is missing, every test is
  skipped with what is missing and how to get it (and Tests/skip_policy.py reports the skip).
- `workdir`, `moduledir`, `testdir`: scratch directories the sandbox's uid 65534 can read.
- `platform`: embedded Kafka and `aerogrid serve` on it, one pair for a test module; a
  module sets its options with `pytestmark = pytest.mark.platform(seed=..., **server_options)`.
- The empty cgroup directories the servers leave for the tenants made during the run go
  at its end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from . import harness
from .prerequisites import missing
from .server import Platform


def pytest_configure(config):
    config.addinivalue_line("markers", "platform(seed=0, **server_options): the options of the module's `platform` "
                                       "(support.server.Platform)")


@pytest.fixture(scope="session")
def needs() -> tuple:
    """What the tests need of the machine (support/prerequisites.py): nothing, unless a
    suite's conftest.py says otherwise."""
    return ()


@pytest.fixture(scope="session", autouse=True)
def prerequisites(needs):
    """Session-wide, so that a missing prerequisite skips a test before any session
    fixture tries to start what needs it."""
    lacking = missing(needs)
    if lacking:
        pytest.skip("these tests need " + ", ".join(lacking))


@pytest.fixture(scope="session", autouse=True)
def no_cgroups_left_behind():
    """A server leaves its tenants' (empty) cgroup directories until a tenant is deleted: the
    ones this run made go with it, so runs do not pile up."""
    before = harness.tenant_cgroups()
    yield
    harness.remove_tenant_cgroups(sorted(harness.tenant_cgroups() - before))


@pytest.fixture(scope="session")
def workdir(request):
    """A scratch directory readable by the sandbox's uid 65534: 0755 and not below a 0700
    directory (so not pytest's tmp_path). AEROGRID_IT_KEEP=1 keeps it."""
    suite = request.config.rootpath.name.lower()
    path = Path(tempfile.mkdtemp(prefix=f"aerogrid-{suite}-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    if os.environ.get("AEROGRID_IT_KEEP"):
        print(f"\ntest files kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def moduledir(workdir, request):
    """The test module's own directory in the workdir."""
    path = workdir / request.module.__name__
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    return path


@pytest.fixture
def testdir(workdir, request):
    """The test's own directory in the workdir."""
    path = workdir / f"{request.node.name}-{secrets.token_hex(3)}"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def platform(moduledir, request):
    """Embedded Kafka and `aerogrid serve` on it for the test module (support.server.Platform),
    with the options of the module's `platform` marker; stopped after the module's last test."""
    marker = request.node.get_closest_marker("platform")
    started = Platform(moduledir, **(marker.kwargs if marker else {}))
    yield started
    started.stop()
