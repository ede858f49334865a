"""Records/s of the seed app through the pure-Python SDK, with this script as the supervisor.

It starts ``Examples/ordersapp/app.py`` under the IPC runner (``python3 -I -S``, the SDK on
sys.path, a socketpair as its IPC socket), sends pre-encoded records frames with at most two
batches in flight, and times from the first records frame to the last batch-done. Kafka and
the supervisor are not involved: this is the app side's ceiling.

    PYTHONPATH=python python3 python/benchmarks/hot_path.py [--batches 200] [--batch-size 2000]
"""

import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time

from aerogrid import _frames as f  # the encoder a supervisor would use

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(HERE)
REPO = os.path.dirname(SDK)

LAUNCH = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
          "from aerogrid.__main__ import main; sys.exit(main())")


def make_frames(batches: int, size: int):
    rnd = random.Random(7)
    products = [f"Product {i:03d}" for i in range(200)]
    frames, totals = [], {}
    for b in range(batches):
        records = []
        for i in range(size):
            n = b * size + i
            product, quantity = rnd.choice(products), rnd.randint(1, 20)
            totals[product] = totals.get(product, 0) + quantity
            value = json.dumps({"product": product, "quantity": quantity}, separators=(",", ":"))
            records.append((0, n % 16, n // 16, 1_700_000_000_000 + n, f"order-{n}".encode(),
                            value.encode(), ()))
        frames.append(f.frame(f.RECORDS, f.encode_records(b, ["orders"], records)))
    return frames, totals


class Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, bytearray()

    def frame(self):
        while True:
            if len(self.buf) >= 5:
                length, ftype = struct.unpack_from(">IB", self.buf)
                if len(self.buf) >= 4 + length:
                    payload = bytes(self.buf[5:4 + length])
                    del self.buf[:4 + length]
                    return ftype, payload
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("app closed the socket")
            self.buf += chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()
    frames, totals = make_frames(args.batches + 1, args.batch_size)
    ours, theirs = socket.socketpair()
    app_path = os.path.join(REPO, "Examples", "ordersapp", "app.py")
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", LAUNCH, SDK, "run", app_path],
        pass_fds=[theirs.fileno()], env={"AEROGRID_IPC_FD": str(theirs.fileno())})
    theirs.close()
    reader = Reader(ours)
    assert reader.frame()[0] == f.HELLO
    ours.sendall(f.frame(f.RESTORE_DONE))
    grid = {}

    def until_batch_done():
        while True:
            ftype, payload = reader.frame()
            if ftype == f.GRID_UPDATE:
                update = json.loads(payload)
                grid[update["key"]] = update["row"]["units_sold"]
            elif ftype == f.BATCH_DONE:
                return
            elif ftype == f.ERROR:
                raise SystemExit(f"unexpected error frame: {payload[:300]!r}")

    ours.sendall(frames[0])  # warm-up batch, not timed
    until_batch_done()
    started = time.perf_counter()
    in_flight = 0
    for frame in frames[1:]:
        if in_flight == 2:
            until_batch_done()
            in_flight -= 1
        ours.sendall(frame)
        in_flight += 1
    while in_flight:
        until_batch_done()
        in_flight -= 1
    elapsed = time.perf_counter() - started
    ours.sendall(f.json_frame(f.SHUTDOWN, {"reason": "benchmark done"}))
    child.wait(10)
    assert grid == totals, "grid differs from the sums computed here"
    records = args.batches * args.batch_size
    print(f"hot_path records={records} seconds={elapsed:.3f} rate={records / elapsed:.0f} rec/s "
          f"(python {sys.version.split()[0]}, batch {args.batch_size})")


if __name__ == "__main__":
    main()
