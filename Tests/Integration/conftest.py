"""Fixtures for the integration tests (issue 4's acceptance): run with `make test-integration`,
or `python3 -m pytest Tests/Integration -q -s` from the repository root to see the numbers.

Needs root (the supervisor makes cgroups and namespaces), the debug build of `aerogrid`
(or AEROGRID_BIN), kcat, and confluent-kafka.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

import harness
from harness import AEROGRID, E2E_ORDERS, KafkaCluster, Orders, Supervisor, kcat_produce, log, total_records


@pytest.fixture(scope="session", autouse=True)
def environment():
    problems = []
    if os.geteuid() != 0:
        problems.append("root (the supervisor creates cgroups and namespaces)")
    if not AEROGRID.exists():
        problems.append(f"{AEROGRID} (swift build, or set AEROGRID_BIN)")
    if shutil.which("kcat") is None:
        problems.append("kcat")
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        problems.append("confluent-kafka (pip install confluent-kafka)")
    if problems:
        pytest.skip("integration tests need " + ", ".join(problems))


@pytest.fixture(scope="session", autouse=True)
def no_cgroups_left_behind():
    """The servers here leave their tenants' (empty) cgroup directories, as a server does
    until a tenant is deleted: the ones this run made go with it, so runs do not pile up."""
    before = harness.tenant_cgroups()
    yield
    harness.remove_tenant_cgroups(sorted(harness.tenant_cgroups() - before))


@pytest.fixture(scope="session")
def workdir():
    """A scratch directory readable by the sandbox's uid 65534: 0755 and not below a 0700
    directory (so not pytest's tmp_path)."""
    path = Path(tempfile.mkdtemp(prefix="aerogrid-it-", dir="/tmp"))  # AEROGRID_IT_KEEP=1 keeps it
    path.chmod(0o755)
    yield path
    if os.environ.get("AEROGRID_IT_KEEP"):
        print(f"\nintegration test files kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def testdir(workdir, request):
    path = workdir / f"{request.node.name}-{secrets.token_hex(3)}"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    return path


@pytest.fixture
def kafka_factory(testdir):
    """Starts embedded Kafka clusters (each in its own process) that stop with the test."""
    started: list = []

    def start(name: str = "kafka") -> KafkaCluster:
        cluster = KafkaCluster(testdir, name=name)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.terminate()


@pytest.fixture(scope="session")
def orders_cluster(workdir):
    """One cluster for the tests that read the same 200,000 orders: the supervisor end to
    end, the standalone runner and the raw protocol client. Yields (cluster, orders)."""
    directory = workdir / "orders-cluster"
    directory.mkdir(mode=0o755)
    cluster = KafkaCluster(directory, name="kafka-shared")
    try:
        orders = Orders(directory, seed=4)
        path = orders.write_wave(E2E_ORDERS)
        seconds = kcat_produce(cluster.bootstrap, path, timeout=120)
        landed = total_records(cluster.bootstrap)
        log(f"kcat: {E2E_ORDERS} orders produced in {seconds:.2f} s; the topic holds {landed}")
        assert landed == E2E_ORDERS, f"kcat wrote {landed} records, not {E2E_ORDERS}"
        yield cluster, orders
    finally:
        cluster.terminate()


@pytest.fixture
def supervisor_factory(testdir, request):
    """Starts supervisors (`aerogrid app run`) with a tenant unique to the test; every one
    still running at the end is stopped, and the test's cgroup directories are removed."""
    started: list = []
    tenant = f"it-{secrets.token_hex(4)}"

    def start(app_dir, bootstrap: str, data_dir: "Path | None" = None, name: str = "supervisor",
              app_name: str = "ordersapp", **options) -> Supervisor:
        supervisor = Supervisor(Path(app_dir), bootstrap, data_dir or testdir / "data", tenant, testdir,
                                name=name, app_name=app_name, **options)
        started.append(supervisor)
        return supervisor

    start.tenant = tenant
    yield start
    for supervisor in started:
        supervisor.terminate()
    # Leftovers of a failed test (a clean stop removes the app's group itself; a tenant's
    # group is left behind by the supervisor). rmdir only removes empty groups.
    for supervisor in started:
        for directory in supervisor.cgroup_dirs():
            for path in (directory, directory.parent):
                try:
                    path.rmdir()
                except OSError:
                    pass


@pytest.fixture
def repo():
    return harness.REPO
