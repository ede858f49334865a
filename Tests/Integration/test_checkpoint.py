"""A clean stop (SIGTERM) "stops the app, writes a final checkpoint": after it the checkpoint
database holds exactly the grid the supervisor printed, and offsets that account for every
record applied — also when a periodic checkpoint write is slow at that moment (a disk
stalling on fsync; here, another connection holding the database's write lock). Stopped
several times over one data directory, the grid still ends exact."""

from __future__ import annotations

import signal
import sqlite3
import time

from support.harness import (
    ORDERSAPP,
    PRODUCTS,
    Orders,
    assert_cgroups_removed,
    checkpointed_offsets,
    checkpointed_rows,
    grid_rows,
    log,
    produce,
)

CYCLES = 3
WAVE = 100_000


def test_final_checkpoint_at_every_stop(kafka_factory, supervisor_factory, testdir):
    cluster = kafka_factory()
    orders = Orders(testdir, seed=14)
    data_dir = testdir / "data"
    app = f"{supervisor_factory.tenant}/ordersapp"
    applied_total = 0
    stale = []
    for cycle in range(1, CYCLES + 1):
        produce(cluster, orders, WAVE)
        supervisor = supervisor_factory(ORDERSAPP, cluster.bootstrap, data_dir=data_dir, name=f"supervisor-{cycle}",
                                        checkpoint_interval=0.2, status_interval=0.1)
        _, seen = supervisor.wait_status(
            lambda s, applied_total=applied_total: s["checkpoints"] >= 1
            and orders.count - applied_total - s["records"] >= 20_000
            or s.get("lag") == 0 and s["records"] > 0, 60, f"cycle {cycle}: mid-stream")
        final, grids = supervisor.stop()
        applied_total += final["records"]
        rows = {f"s:{key}": row for key, row in grid_rows(grids, "product_sum").items()}
        stored_rows = checkpointed_rows(data_dir, app, "product_sum")
        stored_offsets = sum(checkpointed_offsets(data_dir, app).values())
        ok = stored_rows == rows and stored_offsets == applied_total
        log(f"checkpoint cycle {cycle}: stopped with {orders.count - applied_total} outstanding; applied "
            f"{final['records']} (all runs {applied_total}), delivered {final['delivered_records']}, "
            f"checkpoints {seen['checkpoints']} -> {final['checkpoints']}; checkpointed offsets sum {stored_offsets}"
            f"{'' if ok else '  <-- the final checkpoint is missing'}")
        if not ok:
            stale.append((cycle, applied_total - stored_offsets))
        assert_cgroups_removed(supervisor)
        # Whatever the checkpoint holds, the next run continues from it: count from there.
        applied_total = stored_offsets

    last = supervisor_factory(ORDERSAPP, cluster.bootstrap, data_dir=data_dir, name="supervisor-last",
                              checkpoint_interval=0.2, status_interval=0.1)
    last.wait_status(lambda s: s["records"] >= orders.count - applied_total and s.get("lag") == 0, 60,
                     "the last run caught up")
    final, grids = last.stop()
    assert grid_rows(grids, "product_sum") == orders.expected_units()
    assert not stale, (
        f"after {len(stale)} of {CYCLES} clean stops the checkpoint lacked the last applied batches "
        f"(cycle, records applied but not checkpointed): {stale}")


def test_stop_while_a_checkpoint_write_waits(kafka_factory, supervisor_factory, testdir):
    """The periodic checkpoint task takes the changes of batches 1..k and waits for the
    database; batches k+1..n change other rows; then SIGTERM. The final checkpoint must
    hold all of it — or none of it, with the offsets of the last checkpoint that did
    commit. It must never store the offsets after batch n with the rows of batch k+1..n
    only: the restarted supervisor would then skip batches 1..k for good."""
    cluster = kafka_factory()
    orders = Orders(testdir, seed=15)
    data_dir = testdir / "data"
    app = f"{supervisor_factory.tenant}/ordersapp"
    first_products, second_products = PRODUCTS[:5], PRODUCTS[5:]
    produce(cluster, orders, 20_000)
    supervisor = supervisor_factory(ORDERSAPP, cluster.bootstrap, data_dir=data_dir, name="supervisor-1",
                                    checkpoint_interval=0.2, status_interval=0.1)
    supervisor.wait_status(lambda s: s["records"] >= orders.count and s["checkpoints"] >= 1, 60,
                           "the first wave applied and checkpointed")
    time.sleep(0.5)  # a last periodic checkpoint of it

    # Another connection takes the write lock: the supervisor's checkpoint writes wait
    # (its busy timeout is 5 s; everything below happens within about 2 s).
    blocker = sqlite3.connect(data_dir / "aerogrid.sqlite", isolation_level=None, timeout=10)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        locked_at = time.monotonic()
        produce(cluster, orders, 2_000, products=first_products)   # batches 1..k
        supervisor.wait_status(lambda s: s["records"] >= orders.count, 10, "the first products applied")
        time.sleep(0.4)  # a periodic checkpoint takes them and waits for the lock
        produce(cluster, orders, 2_000, products=second_products)  # batches k+1..n
        _, seen = supervisor.wait_status(lambda s: s["records"] >= orders.count, 10, "the second products applied")
        supervisor.signal(signal.SIGTERM)
        time.sleep(0.5)
        log(f"slow checkpoint: lock held {time.monotonic() - locked_at:.2f} s, SIGTERM sent with everything applied "
            f"({seen['records']}), checkpoints {seen['checkpoints']}")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    final, grids = supervisor.stop()
    rows = {f"s:{key}": row for key, row in grid_rows(grids, "product_sum").items()}
    stored_rows = checkpointed_rows(data_dir, app, "product_sum")
    stored_offsets = sum(checkpointed_offsets(data_dir, app).values())
    stale = sorted(key[2:] for key in rows if stored_rows.get(key) != rows[key])
    errors = [line.split("[AeroGridRuntime] ", 1)[-1] for line in supervisor.stderr_path.read_text().splitlines()
              if "checkpoint" in line and "error" in line]
    log(f"slow checkpoint: final status {final}; checkpointed offsets sum {stored_offsets} of {orders.count}; "
        f"rows differing from the printed grid: {stale}; supervisor errors: {errors}")

    # Whatever was stored must be consistent: the restart must end exact.
    second = supervisor_factory(ORDERSAPP, cluster.bootstrap, data_dir=data_dir, name="supervisor-2",
                                checkpoint_interval=0.2, status_interval=0.1)
    second.wait_status(lambda s: s["records"] >= orders.count - stored_offsets and s.get("lag") == 0, 60,
                       "the restart caught up")
    time.sleep(0.3)
    final2, grids2 = second.stop()
    got = grid_rows(grids2, "product_sum")
    wrong = {product: (got.get(product), row) for product, row in orders.expected_units().items() if got.get(product) != row}
    log(f"slow checkpoint, restart: delivered {final2['delivered_records']}; products wrong after the restart "
        f"(got, expected): {wrong}")
    assert not wrong, (
        f"the grid lost updates across a clean stop: the checkpoint stored offsets {stored_offsets} (all applied) "
        f"but stale rows for {stale}; after the restart (got, expected): {wrong}")
    assert stored_rows == rows and stored_offsets == final["records"], (
        f"the final checkpoint does not hold the printed grid: stale rows {stale}, offsets {stored_offsets} "
        f"for {final['records']} applied")
