"""The IPC runner end to end: this test plays the supervisor (tests/fake_supervisor.py, written
from docs/ipc.md without the SDK's codec) and runs apps from files in a child process."""

import json
import os
import socket
import struct
import textwrap
import threading

import pytest

from fake_supervisor import (
    BATCH_DONE,
    GRID_UPDATE,
    HEARTBEAT,
    REPO_DIR,
    RESTORE_DONE,
    SEED_APP,
    FakeSupervisor,
    frame,
    json_frame,
    order,
    records_frame,
)


@pytest.fixture
def supervisor():
    started = []

    def start(app_path=SEED_APP, **kwargs):
        sup = FakeSupervisor(app_path, **kwargs)
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.close()


def write_app(tmp_path, body: str) -> str:
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_seed_app_hello_describes_its_declarations(supervisor):
    sup = supervisor()
    hello = sup.hello()
    assert hello["protocol"].split(".")[0] == "1"
    assert hello["app"] == "ordersapp"
    assert hello["sdk"].startswith("aerogrid-python/")
    assert hello["topics"] == [{
        "name": "orders", "key_type": "str",
        "value_type": {"record": "Order", "fields": [
            {"name": "product", "type": "str", "required": True},
            {"name": "quantity", "type": "int", "required": True}]}}]
    assert hello["grids"] == [{"name": "product_sum", "columns": ["units_sold"]}]
    assert hello["streams"] == [{"name": "sum_orders", "topic": "orders"}]
    assert hello["produces"] == ["orders"]
    sup.send(frame(RESTORE_DONE))
    assert sup.shutdown() == 0


def test_seed_app_batch_gives_grid_updates_then_batch_done(supervisor):
    sup = supervisor()
    sup.start(restore={"product_sum": [["Widget", {"units_sold": 10}]]})
    sup.send(records_frame(1, ["orders"], [
        (0, 0, 100, 1_700_000_000_000, b"o-1", order("Widget", 3)),
        (0, 1, 200, 1_700_000_000_001, b"o-2", order("Gadget", 2)),
        (0, 0, 101, 1_700_000_000_002, b"o-3", order("Widget", 4), [("trace", b"x"), ("n", None)]),
    ]))
    updates, produced, errors, logs, done = sup.read_batch()
    assert sorted(updates, key=lambda u: u["key"]) == [
        {"grid": "product_sum", "key": "Gadget", "row": {"units_sold": 2}},
        {"grid": "product_sum", "key": "Widget", "row": {"units_sold": 17}},
    ]
    assert errors == [] and produced == []
    assert done == (1, 3, 0, 2, 0)  # batch id, records, errors, updates, produced
    assert sup.shutdown() == 0


def test_the_app_finds_its_socket_on_fd_3_without_the_variable(supervisor):
    sup = supervisor(via_fd3=True)
    sup.start()
    sup.send(records_frame(5, ["orders"], [(0, 0, 0, -1, None, order("Widget", 1))]))
    updates, _, _, _, done = sup.read_batch()
    assert updates == [{"grid": "product_sum", "key": "Widget", "row": {"units_sold": 1}}]
    assert done == (5, 1, 0, 1, 0)
    assert sup.shutdown() == 0


def test_pipelined_batches_are_processed_in_order(supervisor):
    sup = supervisor()
    sup.start()
    sup.send(records_frame(1, ["orders"], [(0, 0, 0, -1, b"a", order("W", 1))]))
    sup.send(records_frame(2, ["orders"], [(0, 0, 1, -1, b"b", order("W", 2))]))
    first = sup.read_batch()
    second = sup.read_batch()
    assert first[0] == [{"grid": "product_sum", "key": "W", "row": {"units_sold": 1}}]
    assert first[4][0] == 1
    assert second[0] == [{"grid": "product_sum", "key": "W", "row": {"units_sold": 3}}]
    assert second[4][0] == 2
    assert sup.shutdown() == 0


def test_bad_records_give_error_frames_naming_the_field_and_the_rest_still_counts(supervisor):
    sup = supervisor()
    sup.start()
    sup.send(records_frame(9, ["orders"], [
        (0, 2, 10, -1, b"o-1", b'{"product": "Widget", "quantity": '),        # bad JSON
        (0, 2, 11, -1, b"o-2", b'{"quantity": 3}'),                           # missing field
        (0, 2, 12, -1, b"o-3", b'{"product": "Widget", "quantity": "3"}'),    # wrong type
        (0, 2, 13, -1, b"o-4", order("Widget", 5)),
    ]))
    updates, _, errors, _, done = sup.read_batch()
    assert updates == [{"grid": "product_sum", "key": "Widget", "row": {"units_sold": 5}}]
    assert [(e["batch"], e["topic"], e["partition"], e["offset"], e["kind"], e["handler"])
            for e in errors] == [(9, "orders", 2, off, "decode", "sum_orders") for off in (10, 11, 12)]
    assert "invalid JSON" in errors[0]["error"]
    assert errors[1]["error"] == "Order.product: missing required field"
    assert errors[2]["error"] == "Order.quantity: expected int, got str ('3')"
    assert done == (9, 4, 3, 1, 0)
    assert sup.shutdown() == 0


def test_a_raising_handler_reports_the_record_and_keeps_processing(tmp_path, supervisor):
    path = write_app(tmp_path, """
        import aerogrid
        app = aerogrid.App('bombs', broker=BROKER_URI)
        class Order(aerogrid.Record):
            product: str
            quantity: int
        orders = app.topic('orders', key_type=str, value_type=Order)
        totals = app.Grid('totals', columns=['units'], default=lambda: {'units': 0})
        @app.stream(orders)
        async def add(orders):
            async for key, order in orders.items():
                if order.product == 'Bomb':
                    raise ValueError(f'cannot sell {order.product}')
                totals[order.product] = {'units': totals[order.product]['units'] + order.quantity}
    """)
    sup = supervisor(path)
    sup.start()
    records = [(0, 0, i, -1, b"k", order(p, 1)) for i, p in
               enumerate(["A", "Bomb", "B", "Bomb", "A"])]
    sup.send(records_frame(1, ["orders"], records))
    updates, _, errors, _, done = sup.read_batch()
    assert {u["key"]: u["row"]["units"] for u in updates} == {"A": 2, "B": 1}
    assert [(e["offset"], e["kind"], e["error"]) for e in errors] == [
        (1, "handler", "ValueError: cannot sell Bomb"), (3, "handler", "ValueError: cannot sell Bomb")]
    assert "raise ValueError(f'cannot sell {order.product}')" in errors[0]["traceback"]
    assert errors[0]["traceback"].startswith("Traceback (most recent call last):")
    assert done == (1, 5, 2, 2, 0)
    # The next batch still reaches the (restarted) handler.
    sup.send(records_frame(2, ["orders"], [(0, 0, 5, -1, b"k", order("B", 4))]))
    updates, _, errors, _, done = sup.read_batch()
    assert updates == [{"grid": "totals", "key": "B", "row": {"units": 5}}] and errors == []
    assert sup.shutdown() == 0


def test_broker_uri_is_defined_under_the_supervisor_and_produce_frames_are_sent(tmp_path, supervisor):
    path = write_app(tmp_path, """
        import aerogrid
        app = aerogrid.App('echo', broker=BROKER_URI)
        words = app.topic('words', key_type=None, value_type=str)
        out = app.topic('shouts', key_type=str, value_type=str)
        seen = app.Grid('seen', columns=['broker'])
        @app.stream(words)
        async def shout(words):
            async for word in words:
                seen[word] = {'broker': BROKER_URI}
                await out.send(word, word.upper(), headers=[('from', b'echo')])
    """)
    sup = supervisor(path)
    hello = sup.start()
    assert hello["produces"] == ["words", "shouts"]
    assert hello["topics"][0]["key_type"] == "none"
    sup.send(records_frame(3, ["words"], [(0, 0, 0, -1, b"ignored", b"hi")]))
    updates, produced, errors, _, done = sup.read_batch()
    assert updates == [{"grid": "seen", "key": "hi", "row": {"broker": "aerogrid-ipc://fd/3"}}]
    assert produced == [{"topic": "shouts", "key": b"hi", "value": b"HI", "headers": [("from", b"echo")]}]
    assert done == (3, 1, 0, 1, 1)
    assert sup.shutdown() == 0


def test_a_handler_that_cannot_run_logs_and_exits_1(tmp_path, supervisor):
    path = write_app(tmp_path, """
        import aerogrid
        app = aerogrid.App('broken', broker=BROKER_URI)
        words = app.topic('words', value_type=str)
        @app.stream(words)
        async def nothing(words):
            return
    """)
    sup = supervisor(path)
    sup.start()
    sup.send(records_frame(1, ["words"], [(0, 0, 0, -1, None, b"hi")]))
    ftype, payload = sup.read()
    while ftype == HEARTBEAT:
        ftype, payload = sup.read()
    log = json.loads(payload)
    assert log["level"] == "error" and "returned without reading its stream" in log["message"]
    assert sup.wait() == 1


def test_an_oversized_frame_is_a_protocol_violation(supervisor):
    sup = supervisor()
    sup.start()
    sup.send(struct.pack(">IB", 16 * 1024 * 1024 + 1, 0x13))
    assert sup.wait() == 3
    assert b"protocol error" in sup.stderr


def test_records_before_restore_done_are_a_protocol_violation(supervisor):
    sup = supervisor()
    sup.hello()
    sup.send(records_frame(1, ["orders"], []))
    assert sup.wait() == 3


def test_records_of_a_topic_no_stream_consumes_are_a_protocol_violation(supervisor):
    sup = supervisor()
    sup.start()
    sup.send(records_frame(1, ["payments"], [(0, 0, 0, -1, None, b"{}")]))
    assert sup.wait() == 3
    assert b"payments" in sup.stderr


def test_unknown_frame_types_are_skipped(supervisor):
    sup = supervisor()
    sup.start()
    sup.send(frame(0x7E, b"from a later minor version"))
    sup.send(records_frame(1, ["orders"], [(0, 0, 0, -1, None, order("W", 1))]))
    assert sup.read_batch()[4] == (1, 1, 0, 1, 0)
    assert sup.shutdown() == 0


def test_a_quiet_app_sends_heartbeats(supervisor):
    sup = supervisor()
    sup.start()
    assert sup.read() == (HEARTBEAT, b"")  # within about a second of silence
    assert sup.shutdown() == 0


def test_shutdown_during_restore_exits_0(supervisor):
    sup = supervisor()
    sup.hello()
    sup.send(json_frame(0x14, {"reason": "protocol 9.0 is not supported"}))
    assert sup.wait() == 0
    assert b"protocol 9.0 is not supported" in sup.stderr


def test_an_app_that_fails_to_load_exits_1_with_its_traceback(tmp_path, supervisor):
    path = write_app(tmp_path, """
        import aerogrid
        app = aerogrid.App('oops', broker=BROKER_URI)
        1 / 0
    """)
    sup = supervisor(path)
    assert sup.wait() == 1
    assert b"ZeroDivisionError" in sup.stderr


def doc_examples() -> "list[bytes]":
    """The hex blocks under "Worked examples" in docs/ipc.md, as bytes."""
    text = open(os.path.join(REPO_DIR, "docs", "ipc.md")).read()
    section = text.split("## Worked examples", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for block in section.split("```")[1::2]:
        data = bytearray()
        for line in block.splitlines():
            for token in line.split():
                if len(token) != 2 or any(c not in "0123456789abcdef" for c in token):
                    break
                data.append(int(token, 16))
        blocks.append(bytes(data))
    return blocks


def test_the_worked_examples_in_docs_ipc_md_are_exact():
    records, update, done = doc_examples()
    assert records == records_frame(7, ["orders"], [
        (0, 3, 42, 1_700_000_000_000, b"o-1", b'{"product":"Widget","quantity":3}')])
    assert update == frame(GRID_UPDATE, b'{"grid":"product_sum","key":"Widget","row":{"units_sold":3}}')
    assert done == frame(BATCH_DONE, struct.pack(">QIIII", 7, 1, 0, 1, 0))


def test_the_seed_app_answers_the_worked_example_with_its_frames(supervisor):
    records, update, done = doc_examples()
    sup = supervisor()
    sup.start()
    sup.send(records)
    assert sup.read() == (GRID_UPDATE, update[5:])
    assert sup.read() == (BATCH_DONE, done[5:])
    assert sup.shutdown() == 0


def test_app_logging_is_forwarded_as_log_frames(tmp_path, supervisor):
    path = write_app(tmp_path, """
        import logging
        import aerogrid
        app = aerogrid.App('logs', broker=BROKER_URI)
        words = app.topic('words', value_type=str)
        @app.stream(words)
        async def log_words(words):
            async for word in words:
                logging.getLogger('words').warning('saw %s', word)
    """)
    sup = supervisor(path)
    sup.start()
    sup.send(records_frame(1, ["words"], [(0, 0, 0, -1, None, b"hi")]))
    logs = sup.read_batch()[3]
    assert logs == [{"level": "warning", "message": "saw hi"}]
    assert sup.shutdown() == 0


def test_a_silent_supervisor_is_taken_for_gone(monkeypatch):
    import aerogrid
    from aerogrid import _ipc_runner

    monkeypatch.setattr(_ipc_runner, "HEARTBEAT_INTERVAL", 0.05)
    monkeypatch.setattr(_ipc_runner, "HEARTBEAT_TIMEOUT", 0.3)
    app = aerogrid.App("quiet")
    app.topic("t")
    ours, theirs = socket.socketpair()
    result = []
    runner = threading.Thread(target=lambda: result.append(_ipc_runner.run(app, theirs.detach())))
    runner.start()
    ours.sendall(frame(RESTORE_DONE))
    runner.join(5)
    assert result == [3]
    data = ours.recv(1 << 16)
    assert data.startswith(b"\x00\x00\x00") and frame(HEARTBEAT) in data  # it kept sending heartbeats
    ours.close()
