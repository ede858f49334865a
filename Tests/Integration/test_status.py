"""The supervisor's status lines describe one moment: over a topic that does not change,
read from the start, a line's lag is exactly the records produced minus the line's
records — from the first line on, before any batch is applied too."""

from __future__ import annotations

import itertools
import statistics

from support.harness import E2E_ORDERS, ORDERSAPP, log

STATUS_INTERVAL = 0.1


def test_status_lag_matches_records(orders_cluster, supervisor_factory):
    cluster, _ = orders_cluster
    supervisor = supervisor_factory(ORDERSAPP, cluster.bootstrap, checkpoint_interval=0.5,
                                    status_interval=STATUS_INTERVAL)
    supervisor.wait_status(lambda s: s["records"] >= E2E_ORDERS, 120, f"{E2E_ORDERS} records applied")
    supervisor.wait_status(lambda s: True, 10, "one more status line")
    lines = supervisor.statuses()
    final, _ = supervisor.stop()
    assert final["records"] == E2E_ORDERS

    with_lag = [(at, s) for at, s in lines if "lag" in s]
    wrong = [(round(at - supervisor.started, 3), s["state"], s["records"], s["lag"], E2E_ORDERS - s["records"])
             for at, s in with_lag if s["lag"] != E2E_ORDERS - s["records"]]
    before_first_batch = [w for w in wrong if w[2] == 0]
    # Once batches are applied the lag needs the watermarks of every partition read.
    applying = [at for at, s in lines if s["records"] > 0]
    spacing = statistics.median(b - a for a, b in itertools.pairwise(applying)) if len(applying) > 1 else 0.0
    log(f"status: {len(lines)} lines, median spacing {spacing:.3f} s once records were applied, for --status-interval {STATUS_INTERVAL}; "
        f"{len(wrong)} of {len(with_lag)} lines with a lag that is not produced - applied "
        f"({len(before_first_batch)} of them before the first batch was applied)")
    for line in wrong[:8]:
        log(f"  at {line[0]:.3f} s, {line[1]}: applied {line[2]}, lag {line[3]}, actually outstanding {line[4]}")
    assert not wrong, (
        f"{len(wrong)} status lines report a lag other than the records outstanding "
        f"(seconds, state, applied, reported lag, outstanding): {wrong[:6]}")
    assert spacing <= 2 * STATUS_INTERVAL, f"status lines come every {spacing:.3f} s, not every {STATUS_INTERVAL} s"
