"""The stream's app discovery (deploy, start, crash, stop and delete pushed to `watch_apps`)
and who may use it how: another tenant's app is not_found; bad JSON, an unknown op and a
100 KB message each get an error and the connection lives on; a frame over 1 MiB closes it;
subscriptions per connection, tokens and the connection quota.
"""

from __future__ import annotations

import json
import time

import pytest

from streaming import APP, GRID, cells_bundle, create_tenant, send_commands
from support.harness import log
from support.server import expect, new_operator_token, orders_bundle, poll, wait_state
from support.stream import StreamClient, websockets_sync

pytestmark = pytest.mark.platform(seed=47)  # the same orders in each stream module


# --------------------------------------------------------------------------------------------
# Discovery


def test_watch_apps_pushes_deploy_start_crash_stop_delete(st):
    tenant = create_tenant(st.server, "discovery")
    topic = f"{tenant.name}.cells"
    send_commands(st.cluster.bootstrap, topic, [{"key": "a", "set": {"a": 1}}])  # the topic exists before the start
    client = StreamClient(st.server, tenant.token)
    events: list = []
    try:
        expect(tenant.admin.deploy(orders_bundle()), 201)
        client.send({"op": "watch_apps"})
        apps = client.wait_type("apps")
        assert [app["name"] for app in apps["apps"]] == [APP], apps
        listed = apps["apps"][0]
        assert listed == {**expect(tenant.admin.app(APP), 200).json(), "updated_at": listed["updated_at"]}, listed

        steps = []
        began = time.monotonic()

        def step(what: str, action) -> None:
            # The server compares the apps every 250 ms: changes closer together come as one
            # event (docs/protocol.md), so each step is given two passes of its own.
            time.sleep(0.6)
            steps.append((what, client.mark(), time.monotonic() - began))
            action()

        # Each step waits for the API to show it done, not for its event, so a missing event
        # does not hide the others.
        step("deploy", lambda: expect(tenant.admin.deploy(cells_bundle("crashy", topic)), 201))
        step("start", lambda: (expect(tenant.admin.action("crashy", "start"), 200),
                               wait_state(tenant.admin, "crashy", "running")))
        # The crash window starts when the command is sent: the command must reach the app
        # inside it, and the window must end before the restart (backoff 1 s) reads it again.
        step("crash", lambda: (send_commands(st.cluster.bootstrap, topic, [{"crash_until": time.time() + 0.8}]),
                               poll(lambda: tenant.admin.app("crashy"), lambda r: r.json()["restarts"] >= 1, 30,
                                    "a restart after the crash")))
        wait_state(tenant.admin, "crashy", "running", timeout=30)
        step("stop", lambda: (expect(tenant.admin.action("crashy", "stop"), 200),
                              wait_state(tenant.admin, "crashy", "stopped", timeout=40)))
        step("delete", lambda: expect(tenant.admin.delete("/api/v1/apps/crashy"), 204))
        time.sleep(1.0)  # events are found by comparing every 250 ms

        events = [(t, m) for t, m in client.messages if m.get("type") == "app"]
        seen = [(m["event"], m["app"].get("name"), m["app"].get("state")) for _, m in events]
        log(f"discovery: steps {[(what, round(at, 2)) for what, _, at in steps]}; events "
            f"{[(round(t - began, 2), *fields) for (t, _), fields in zip(events, seen, strict=True)]}")
        missing = []
        for what, start, _ in steps:
            found = [m for _, m in client.messages[start:] if m.get("type") == "app" and m["event"] == what
                     and m["app"].get("name") == "crashy"]
            if not found:
                missing.append(what)
        assert not missing, f"no {missing} event for app crashy; the events were {seen}"
        crash = next(m for _, m in client.messages if m.get("type") == "app" and m["event"] == "crash")
        assert crash["app"]["state"] in ("crashed", "backoff") and crash["app"]["crash_reason"] == "exit", crash
        delete = next(m for _, m in client.messages if m.get("type") == "app" and m["event"] == "delete")
        assert delete["app"] == {"name": "crashy"}, delete
        assert all(m["app"].get("name") == "crashy" for _, m in events), "events for an app that did not change"
    finally:
        client.close()


def test_a_deploy_right_after_watch_apps_is_pushed(st):
    """The events start where the `apps` list ends: a deploy made at once is not lost."""
    tenant = create_tenant(st.server, "watch")
    client = StreamClient(st.server, tenant.token)
    try:
        client.send({"op": "watch_apps"})
        assert client.wait_type("apps")["apps"] == []
        expect(tenant.admin.deploy(orders_bundle()), 201)
        event = client.wait_type("app", 10)
        assert event["event"] == "deploy" and event["app"]["name"] == APP, event
    finally:
        client.close()


def test_an_api_change_has_an_event_even_when_the_app_ends_as_it_was(st):
    """A stop and a start between two comparisons leave the app as it was; a client that
    showed the stop's answer must still hear of the start. Here: a stop of an app that never
    ran, which changes nothing but is an API change all the same."""
    tenant = create_tenant(st.server, "touched")
    client = StreamClient(st.server, tenant.token)
    try:
        expect(tenant.admin.deploy(orders_bundle()), 201)
        client.send({"op": "watch_apps"})
        before = client.wait_type("apps")["apps"][0]
        time.sleep(0.6)  # two comparisons: nothing to tell
        assert not [m for _, m in client.messages if m.get("type") == "app"], client.messages
        start = client.mark()
        answer = expect(tenant.admin.action(APP, "stop"), 200).json()
        event = client.wait_type("app", 10, start=start)
        assert event["event"] == "state" and event["app"]["name"] == APP, event
        assert event["app"]["desired_state"] == answer["desired_state"] == before["desired_state"] == "stopped", event
    finally:
        client.close()


# --------------------------------------------------------------------------------------------
# Tenants, tokens, bad messages, limits


def test_another_tenants_app_is_not_found(st):
    other = create_tenant(st.server, "other")
    client = StreamClient(st.server, other.token)
    try:
        client.wait_type("ready")
        client.send({"op": "subscribe", "id": "x", "app": APP, "grid": GRID})
        error = client.wait_type("error", id="x")
        assert error["code"] == "not_found", error
        client.send({"op": "watch_apps"})
        assert client.wait_type("apps")["apps"] == []
        time.sleep(0.5)
        assert [m for _, m in client.messages if m.get("id") == "x"] == [error], "more than the error for x"
        assert client.ping()["id"] == "p"
    finally:
        client.close()


def test_bad_messages_get_errors_and_the_connection_lives(st):
    client = StreamClient(st.server, st.tenant.token)
    try:
        client.wait_type("ready")
        cases = [("bad JSON", "{not json"), ("not an object", "[1, 2]"), ("unknown op", {"op": "fly", "id": "u"}),
                 ("no op", {"id": "n"}), ("100 KB", {"op": "ping", "id": "x" * 100_000}),
                 ("max_rate 0", {"op": "subscribe", "id": "r", "app": APP, "grid": GRID, "max_rate": 0}),
                 ("a key that is an object", {"op": "subscribe", "id": "k", "app": APP, "grid": GRID, "keys": [{}]})]
        for what, message in cases:
            start = client.mark()
            client.send(message)
            error = client.wait_type("error", 10, start)
            assert error["code"] == "bad_request" and error["message"], f"{what}: {error}"
            assert client.ping(what)["id"] == what, what
        # A numeric id comes back as text.
        start = client.mark()
        client.send({"op": "ping", "id": 7})
        assert client.wait_type("pong", 10, start) == {"type": "pong", "id": "7"}
        # max_rate above 50 is capped.
        start = client.mark()
        from websockets.exceptions import ConnectionClosed

        client.send({"op": "subscribe", "id": "fast", "app": APP, "grid": GRID, "max_rate": 1000})
        assert client.wait_type("subscribed", 10, start)["max_rate"] == 50
        expect(st.server.client().get("/healthz"), 200)

        # A frame over 1 MiB closes the connection (1009); the server goes on. The close can
        # come while the client is still sending the frame: then the send reports it.
        try:
            client.send("x" * (2 << 20))
            closed = client.wait_closed()
        except ConnectionClosed as error:
            closed = error
        # The server's 1009 close frame, unless the kernel reset the connection first (the
        # server closed with the rest of the 2 MiB frame unread): then no close frame at all.
        received = getattr(closed, "rcvd", None)
        assert (received is not None and received.code == 1009) or (received is None and getattr(closed, "sent", None) is None), \
            f"closed with {closed!r}"
        expect(st.server.client().get("/healthz"), 200)
        again = StreamClient(st.server, st.tenant.token)
        try:
            assert again.ping()["id"] == "p"
        finally:
            again.close()
    finally:
        client.close()


def test_subscriptions_per_connection_are_limited(st):
    client = StreamClient(st.server, st.tenant.token)
    try:
        for index in range(100):
            client.send({"op": "subscribe", "id": f"s{index}", "app": APP, "grid": GRID, "max_rate": 1})
        client.wait_type("snapshot", 30, id="s99")
        start = client.mark()
        client.send({"op": "subscribe", "id": "s100", "app": APP, "grid": GRID})
        error = client.wait_type("error", 10, start, id="s100")
        assert error["code"] == "over_quota", error
        assert client.ping()["id"] == "p"
    finally:
        client.close()


def test_tokens_and_the_connection_quota(st):
    connect = websockets_sync()
    from websockets.exceptions import ConnectionClosed
    url = f"ws://{st.server.host}:{st.server.port}/api/v1/stream"

    def refused(first: str | None, headers: dict | None = None) -> tuple:
        """(the messages, the close code) of a connection the server ends."""
        messages = []
        with connect(url, additional_headers=headers or {}, open_timeout=10) as ws:
            if first is not None:
                ws.send(first)
            try:
                while True:
                    messages.append(json.loads(ws.recv(timeout=10)))
            except ConnectionClosed as closed:
                return messages, closed.rcvd.code if closed.rcvd else None

    for what, first, headers in [("an unknown token", json.dumps({"op": "auth", "token": new_operator_token()}), None),
                                 ("a first message that is not auth", json.dumps({"op": "ping"}), None),
                                 ("a bad header", None, {"Authorization": "Bearer agt_nope"})]:
        messages, code = refused(first, headers)
        assert [m["code"] for m in messages] == ["unauthorized"] and code == 1008, f"{what}: {messages} {code}"
    messages, code = refused(json.dumps({"op": "auth", "token": st.server.operator_token}))
    assert [m["code"] for m in messages] == ["forbidden"] and code == 1008, f"the operator token: {messages} {code}"

    tenant = create_tenant(st.server, "quota")
    expect(st.server.operator.request("PUT", f"/api/v1/tenants/{tenant.name}/quota", json_body={"max_connections": 2}), 200)
    viewer = expect(tenant.admin.post("/api/v1/tokens", json_body={"name": "v", "role": "viewer"}), 201).json()
    first, second = StreamClient(st.server, tenant.token), StreamClient(st.server, viewer["secret"], header=False)
    try:
        assert first.wait_type("ready")["role"] == "admin"
        assert second.wait_type("ready")["role"] == "viewer"
        messages, code = refused(None, {"Authorization": f"Bearer {tenant.token}"})
        assert [m["code"] for m in messages] == ["over_quota"] and code == 1008, f"a third connection: {messages} {code}"
        assert "2" in messages[0]["message"], messages
        first.close()
        deadline = time.monotonic() + 10
        while True:  # the server notices the close, then admits another
            third = StreamClient(st.server, tenant.token)
            answer = third.wait(lambda m: m.get("type") in ("ready", "error"), 10, "ready or an error")
            third.close()
            if answer["type"] == "ready" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer["type"] == "ready", f"no connection admitted after one of two closed: {answer}"
    finally:
        first.close()
        second.close()
