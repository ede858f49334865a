"""Fixtures for the integration tests (issue 4's acceptance), besides support.plugin's: run
with `make test-integration`, and `make test-integration PYTEST_ARGS=-s` to see the numbers.

Needs root (the supervisor makes cgroups and namespaces), the debug build of `aerogrid`
(or AEROGRID_BIN), kcat, and confluent-kafka.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from streaming import APP, WAVE, create_tenant, fatal_lines, stats_bundle, wait_apps
from support.harness import (
    E2E_ORDERS,
    REPO,
    KafkaCluster,
    Orders,
    Supervisor,
    kcat_produce,
    log,
    produce,
    total_records,
)
from support.server import expect, orders_bundle
from support.stream import websockets_sync


@pytest.fixture(scope="session")
def needs() -> tuple:
    return ("root", "aerogrid", "kcat", "confluent-kafka")


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

    def start(app_dir, bootstrap: str, data_dir: Path | None = None, name: str = "supervisor",
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
    return REPO


@pytest.fixture(scope="module")
def st(platform):
    """The stream tests' platform (test_stream_*.py): one tenant whose orders app and stats
    app run and have read the module's first orders. `st.server` is the platform's server,
    started again by `the_stream_server_lives` when it died."""
    websockets_sync()
    tenant = create_tenant(platform.server, "stream")
    state = SimpleNamespace(platform=platform, server=platform.server, cluster=platform.cluster, orders=platform.orders,
                            tenant=tenant)
    expect(tenant.admin.deploy(orders_bundle()), 201)
    expect(tenant.admin.deploy(stats_bundle()), 201)
    for app in (APP, "statsapp"):
        expect(tenant.admin.action(app, "start"), 200)
    produce(platform.cluster, platform.orders, WAVE)
    wait_apps(state)
    return state


@pytest.fixture(autouse=True)
def the_stream_server_lives(request):
    """A test using `st` fails (at its teardown) when the server died during it; the next one
    gets the server started again on the same data directory, so one crash is reported once,
    by the test that caused it."""
    if "st" not in request.fixturenames:
        yield
        return
    state = request.getfixturevalue("st")
    if not state.server.alive():
        log(f"stream server: found dead ({state.server.proc.poll()}, {fatal_lines(state.server)}); starting it again")
        state.server = state.platform.start_server()
        state.tenant.admin = state.server.client(state.tenant.token)
        wait_apps(state)
    yield
    time.sleep(0.3)  # a crash from the test's last close
    if not state.server.alive():
        pytest.fail(f"the server died during the test: exit {state.server.proc.poll()}, {fatal_lines(state.server)}")
