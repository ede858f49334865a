"""The supervisor's side of docs/ipc.md, written from the document alone.

It deliberately shares no code with the SDK (no `aerogrid` import): it is the check that the
document is enough to implement the protocol.
"""

import json
import os
import socket
import struct
import subprocess
import sys

SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(SDK_DIR)
SEED_APP = os.path.join(REPO_DIR, "Examples", "ordersapp", "app.py")

HELLO, GRID_UPDATE, BATCH_DONE, PRODUCE, LOG, ERROR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
RESTORE, RESTORE_DONE, RECORDS, SHUTDOWN = 0x11, 0x12, 0x13, 0x14
HEARTBEAT = 0x20

# The launch line from "Launching the app process".
LAUNCH = ('import sys; sys.path.insert(0, {sdk!r}); '
          'from aerogrid.__main__ import main; sys.exit(main())')


def frame(ftype: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IB", len(payload) + 1, ftype) + payload


def json_frame(ftype: int, obj) -> bytes:
    return frame(ftype, json.dumps(obj).encode())


def records_frame(batch_id: int, topics, records) -> bytes:
    """records: (topic_index, partition, offset, timestamp_ms, key, value[, headers])."""
    out = struct.pack(">QH", batch_id, len(topics))
    for name in topics:
        out += struct.pack(">H", len(name.encode())) + name.encode()
    out += struct.pack(">I", len(records))
    for record in records:
        t, partition, offset, ts, key, value = record[:6]
        headers = record[6] if len(record) > 6 else []
        out += struct.pack(">H", t) + struct.pack(">i", partition) + struct.pack(">q", offset)
        out += struct.pack(">q", ts)
        out += struct.pack(">i", -1 if key is None else len(key))
        out += struct.pack(">i", -1 if value is None else len(value))
        out += struct.pack(">H", len(headers))
        out += (key or b"") + (value or b"")
        for name, hvalue in headers:
            out += struct.pack(">H", len(name.encode())) + name.encode()
            out += struct.pack(">i", -1 if hvalue is None else len(hvalue)) + (hvalue or b"")
    return frame(RECORDS, out)


def order(product, quantity) -> bytes:
    return json.dumps({"product": product, "quantity": quantity}).encode()


class FakeSupervisor:
    """Starts an app under the runner on a socketpair and talks to it frame by frame."""

    def __init__(self, app_path: str = SEED_APP, *, via_fd3: bool = False, timeout: float = 15):
        self.sock, child_end = socket.socketpair()
        self.sock.settimeout(timeout)
        python = [sys.executable, "-I", "-S", "-c", LAUNCH.format(sdk=SDK_DIR), "run", app_path]
        fd = child_end.fileno()
        if via_fd3:
            # The production setup: the socket is fd 3 and no variable says so.
            move_to_fd3 = ("import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
                           "os.execv(sys.argv[2], sys.argv[2:])")
            argv, env = [sys.executable, "-c", move_to_fd3, str(fd), *python], {}
        else:
            argv, env = python, {"AEROGRID_IPC_FD": str(fd)}
        self.process = subprocess.Popen(argv, pass_fds=[fd], env=env, cwd=os.path.dirname(app_path),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        child_end.close()
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self):
        """The next frame as (type, payload); heartbeats are returned too."""
        while True:
            if len(self.buffer) >= 5:
                length, ftype = struct.unpack(">IB", self.buffer[:5])
                assert 1 <= length <= 16 * 1024 * 1024
                if len(self.buffer) >= 4 + length:
                    payload = self.buffer[5:4 + length]
                    self.buffer = self.buffer[4 + length:]
                    return ftype, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the app closed the socket")
            self.buffer += chunk

    def read_batch(self):
        """Frames up to and including the next batch-done, as
        (grid_updates, produced, errors, logs, batch_done_tuple); heartbeats are skipped."""
        updates, produced, errors, logs = [], [], [], []
        while True:
            ftype, payload = self.read()
            if ftype == GRID_UPDATE:
                updates.append(json.loads(payload))
            elif ftype == PRODUCE:
                produced.append(decode_produce(payload))
            elif ftype == ERROR:
                errors.append(json.loads(payload))
            elif ftype == LOG:
                logs.append(json.loads(payload))
            elif ftype == BATCH_DONE:
                return updates, produced, errors, logs, struct.unpack(">QIIII", payload)
            elif ftype != HEARTBEAT:
                raise AssertionError(f"unexpected frame type {ftype:#x} in a batch")

    def hello(self) -> dict:
        ftype, payload = self.read()
        assert ftype == HELLO, f"first frame is {ftype:#x}, not hello"
        return json.loads(payload)

    def start(self, restore=None) -> dict:
        """Read hello, send restore frames and restore-done; return the hello."""
        hello = self.hello()
        for grid, rows in (restore or {}).items():
            self.send(json_frame(RESTORE, {"grid": grid, "rows": rows}))
        self.send(frame(RESTORE_DONE))
        return hello

    def shutdown(self) -> int:
        self.send(json_frame(SHUTDOWN, {"reason": "test done"}))
        return self.wait()

    def wait(self) -> int:
        try:
            self.stdout, self.stderr = self.process.communicate(timeout=15)
        finally:
            self.sock.close()
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        self.sock.close()


def decode_produce(payload: bytes) -> dict:
    (n,) = struct.unpack_from(">H", payload, 0)
    pos = 2
    topic = payload[pos:pos + n].decode()
    pos += n
    klen, vlen, hcount = struct.unpack_from(">iiH", payload, pos)
    pos += 10
    key = None if klen < 0 else payload[pos:pos + klen]
    pos += max(klen, 0)
    value = None if vlen < 0 else payload[pos:pos + vlen]
    pos += max(vlen, 0)
    headers = []
    for _ in range(hcount):
        (n,) = struct.unpack_from(">H", payload, pos)
        name = payload[pos + 2:pos + 2 + n].decode()
        pos += 2 + n
        (hlen,) = struct.unpack_from(">i", payload, pos)
        pos += 4
        headers.append((name, None if hlen < 0 else payload[pos:pos + hlen]))
        pos += max(hlen, 0)
    assert pos == len(payload)
    return {"topic": topic, "key": key, "value": value, "headers": headers}
