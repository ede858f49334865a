"""Write an animation to Kafka for the pixels app, one whole 64x48 frame per record (needs
`pip install confluent-kafka`).

    python3 produce_frames.py --broker localhost:9092 [--fps 30] [--seconds 0] [--topic pixels]

A plasma of shifting colours with a ball bouncing over it: every pixel changes in every
frame, the most a grid can be asked to do. Each record is keyed by the animation's name (so
all frames are in one partition, in order) and looks like
{"frame": 42, "time": 1764494102.125, "pixels": [["#1a2b3c", ... 64], ... 48 rows]}.
`--seconds 0` runs until Ctrl-C; `--fps 0` writes as fast as it can draw. The last line
printed is the expected content of the app's grids, as JSON:
{"frames", "seconds", "picture": {"<y>": {"c0": "#rrggbb", ...}}, "progress": {"animation": {...}}}.
"""

import argparse
import json
import math
import sys
import time

WIDTH, HEIGHT = 64, 48
COLUMNS = [f"c{x}" for x in range(WIDTH)]
SPEED = 1.0  # animation seconds per second of frames at the nominal rate (see `t` below)


def _palette() -> list:
    """256 colours around the rainbow, as '#rrggbb'."""
    colours = []
    for i in range(256):
        a = 2 * math.pi * i / 256
        r = int(128 + 127 * math.sin(a))
        g = int(128 + 127 * math.sin(a + 2 * math.pi / 3))
        b = int(128 + 127 * math.sin(a + 4 * math.pi / 3))
        colours.append(f"#{r:02x}{g:02x}{b:02x}")
    return colours


PALETTE = _palette()
# Per-pixel constants of the plasma: the distance from the centre and the diagonal.
_RADIUS = [[math.hypot(x - WIDTH / 2, y - HEIGHT / 2) for x in range(WIDTH)] for y in range(HEIGHT)]


def render(t: float) -> list:
    """The picture at animation time `t` (seconds): HEIGHT rows of WIDTH colours."""
    sin = math.sin
    xs = [sin(x / 7.0 + t) for x in range(WIDTH)]
    ys = [sin(y / 5.0 - t * 0.8) for y in range(HEIGHT)]
    diagonal = [sin((d) / 11.0 + t * 0.6) for d in range(WIDTH + HEIGHT)]
    shift = int(t * 40)  # the palette cycles too
    # A ball bouncing around the frame, lit from the top left.
    radius = 7.5
    bx = radius + abs((t * 23.0) % (2 * (WIDTH - 2 * radius)) - (WIDTH - 2 * radius))
    by = radius + abs((t * 17.0) % (2 * (HEIGHT - 2 * radius)) - (HEIGHT - 2 * radius))
    rows = []
    for y in range(HEIGHT):
        radial = _RADIUS[y]
        sy = ys[y]
        row = [PALETTE[(int((xs[x] + sy + diagonal[x + y] + sin(radial[x] / 4.0 - t * 1.3)) * 32) + shift) & 255]
               for x in range(WIDTH)]
        dy = y + 0.5 - by
        if abs(dy) < radius:
            for x in range(max(0, int(bx - radius)), min(WIDTH, int(bx + radius) + 1)):
                dx = x + 0.5 - bx
                d2 = dx * dx + dy * dy
                if d2 < radius * radius:
                    # brightest towards the top left, darker at the rim
                    light = 1.0 - math.hypot(dx + radius / 3, dy + radius / 3) / (1.5 * radius)
                    v = max(0, min(255, int(70 + 185 * light)))
                    row[x] = f"#{v:02x}{v:02x}{min(255, v + 20):02x}"
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="produce an animation for the pixels app")
    parser.add_argument("--broker", default="localhost:9092")
    parser.add_argument("--topic", default="pixels")
    parser.add_argument("--fps", type=float, default=30, help="frames per second (0 = as fast as possible)")
    parser.add_argument("--seconds", type=float, default=0, help="how long to run (0 = until Ctrl-C)")
    parser.add_argument("--frames", type=int, default=0, help="stop after this many frames (0 = no limit)")
    parser.add_argument("--name", default="plasma", help="the animation's name: the records' key")
    args = parser.parse_args()

    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": args.broker, "linger.ms": 2,
                         "compression.type": "lz4", "message.max.bytes": 4_000_000})
    nominal = args.fps or 30  # the animation's own clock: frame n shows time n / nominal
    started = time.monotonic()
    n = 0
    pixels = None
    sent = None
    try:
        while True:
            if args.frames and n >= args.frames:
                break
            if args.seconds and time.monotonic() - started >= args.seconds:
                break
            pixels = render(n * SPEED / nominal)
            sent = round(time.time(), 3)
            value = json.dumps({"frame": n, "time": sent, "pixels": pixels}, separators=(",", ":"))
            while True:
                try:
                    producer.produce(args.topic, key=args.name, value=value)
                    break
                except BufferError:  # the local queue is full: let it drain
                    producer.poll(0.05)
            producer.poll(0)
            n += 1
            if args.fps:
                delay = started + n / args.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    except KeyboardInterrupt:
        pass
    left = producer.flush(30)
    seconds = time.monotonic() - started
    if left:
        print(f"produce_frames: {left} frames were not delivered", file=sys.stderr)
    print(f"produce_frames: {n} frames in {seconds:.1f} s ({n / max(seconds, 1e-9):.1f} frames/s)", file=sys.stderr)
    expected = {"frames": n, "seconds": round(seconds, 3), "picture": {}, "progress": {}}
    if pixels is not None:
        expected["picture"] = {str(y): dict(zip(COLUMNS, row, strict=True)) for y, row in enumerate(pixels)}
        expected["progress"] = {"animation": {"frame": n - 1, "frames": n, "time": sent}}
    print(json.dumps(expected))


if __name__ == "__main__":
    main()
