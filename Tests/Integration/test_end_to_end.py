"""End to end: Kafka in its own process, 200,000 orders written with kcat, the ordersapp run
by the supervisor and by the SDK's standalone runner; both grids equal the sums computed
from the generated orders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from support.harness import E2E_ORDERS, ORDERSAPP, REPO, assert_cgroups_removed, grid_rows, log


def test_ordersapp_under_the_supervisor(orders_cluster, supervisor_factory):
    cluster, orders = orders_cluster
    supervisor = supervisor_factory(ORDERSAPP, cluster.bootstrap, checkpoint_interval=0.5, status_interval=0.1)
    started = supervisor.started

    first_at, _ = supervisor.wait_status(lambda s: s["delivered_records"] > 0, 60, "the first records delivered")
    done_at, done = supervisor.wait_status(
        lambda s: s["records"] >= E2E_ORDERS and s.get("lag") == 0, 120, f"{E2E_ORDERS} records applied")
    streaming = done_at - first_at
    log(f"e2e: {E2E_ORDERS} records applied {done_at - started:.2f} s after the supervisor started "
        f"({first_at - started:.2f} s to the first delivery); {E2E_ORDERS / max(streaming, 1e-3):,.0f} records/s "
        f"from the first delivery; {done['checkpoints']} checkpoints")

    final, grids = supervisor.stop()
    log(f"e2e: final status {final}")
    assert grid_rows(grids, "product_sum") == orders.expected_units()
    assert final["records"] == E2E_ORDERS
    assert final["delivered_records"] == E2E_ORDERS
    assert final["failed_records"] == 0
    assert final["restarts"] == 0
    assert final["state"] == "stopped"
    assert "last_crash" not in final
    assert grids["grids"]["product_sum"]["columns"] == ["units_sold"]
    assert_cgroups_removed(supervisor)


def test_standalone_runner(orders_cluster):
    """`python3 -m aerogrid run app.py --broker ...`: the SDK consumes Kafka itself. It joins
    a consumer group, which the embedded cluster takes 3 to 44 s to form."""
    cluster, orders = orders_cluster
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "aerogrid", "run", str(ORDERSAPP / "app.py"), "--broker", cluster.bootstrap,
         "--print-grids", "--idle-exit", "2", "--quiet"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"the standalone runner exited {result.returncode}:\n{result.stderr[-3000:]}"
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    grids = {line["grid"]: line["rows"] for line in printed if "rows" in line}
    assert "product_sum" in grids, f"no product_sum grid printed:\n{result.stdout[-2000:]}"
    rows = dict(grids["product_sum"])
    log(f"standalone: {len(rows)} products in {time.monotonic() - started:.1f} s (consumer group join included)")
    assert rows == orders.expected_units()
    assert " error in " not in result.stderr, result.stderr[-2000:]  # no record failed
