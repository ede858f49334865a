"""Running an app without the supervisor: it consumes Kafka itself, for local development.

The grids live only in this process, so every run reads the declared topics from the start
(offsets are never committed) and rebuilds them; grid changes are printed as JSON lines.
"""

import json
import sys
import time

from ._batch import BatchProcessor, HandlerError

BATCH_SIZE = 10_000  # records per consume() call, processed as one batch
ASSIGN_WAIT = 30.0  # seconds --idle-exit waits at least for the first partition assignment


def bootstrap_servers(broker_uri: str) -> str:
    """``kafka://h1:9092,h2:9092`` or ``h1:9092,h2:9092`` -> ``h1:9092,h2:9092``."""
    servers = []
    for part in broker_uri.split(","):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        servers.append(part.rstrip("/"))
    return ",".join(s for s in servers if s)


class _ProducerSink:
    """Where ``topic.send()`` goes standalone: a confluent-kafka producer, made on first use."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.producer = None

    def produce(self, topic: str, key, value, headers) -> None:
        if self.producer is None:
            from confluent_kafka import Producer

            self.producer = Producer({"bootstrap.servers": self.bootstrap})
        self.producer.produce(topic, key=key, value=value, headers=list(headers) or None)
        self.producer.poll(0)

    def flush(self) -> None:
        if self.producer is not None:
            self.producer.flush(10)


def run(app, broker_uri: str, *, print_grids: bool = False, idle_exit: "float | None" = None,
        quiet: bool = False) -> int:
    try:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError
    except ImportError:
        print("aerogrid: standalone mode needs confluent-kafka: pip install confluent-kafka",
              file=sys.stderr)
        return 2
    topics = sorted({stream.topic.name for stream in app._streams})
    if not topics:
        print(f"aerogrid: app {app.name!r} declares no stream, nothing to consume", file=sys.stderr)
        return 1
    bootstrap = bootstrap_servers(broker_uri)
    try:
        processor = BatchProcessor(app)
    except RuntimeError as exc:
        print(f"aerogrid: {exc}", file=sys.stderr)
        return 1
    sink = app._sink = _ProducerSink(bootstrap)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"aerogrid-{app.name}",
        "auto.offset.reset": "earliest",
        # The grids are rebuilt from the start on every run, so committed offsets would only
        # make the next run skip records its grids need.
        "enable.auto.commit": False,
    })
    # --idle-exit counts from the partition assignment, since joining the consumer group
    # takes seconds; a group that never gets partitions gives up after ASSIGN_WAIT at least.
    last_activity = time.monotonic() + max(0.0, ASSIGN_WAIT - (idle_exit or 0.0))

    def on_assign(consumer, partitions):
        nonlocal last_activity
        for partition in partitions:
            partition.offset = OFFSET_BEGINNING
        consumer.assign(partitions)
        last_activity = time.monotonic()

    consumer.subscribe(topics, on_assign=on_assign)
    status = 0
    try:
        while idle_exit is None or time.monotonic() - last_activity < idle_exit:
            messages = consumer.consume(BATCH_SIZE, 0.5)
            if not messages:
                continue
            names, records = _to_records(messages, KafkaError)
            if records:
                for error in processor.process(names, records):
                    _print_error(error)
                changes = processor.take_changes()
                if not quiet and changes:
                    sys.stdout.write("".join(
                        json.dumps({"grid": g, "key": k, "row": r}) + "\n" for g, k, r in changes))
                    sys.stdout.flush()
            # Idle counts from the end of the last batch: a batch that takes longer than
            # --idle-exit must not end the run with records still waiting.
            last_activity = time.monotonic()
    except KeyboardInterrupt:
        pass
    except HandlerError as exc:
        print(f"aerogrid: {exc}", file=sys.stderr)
        status = 1
    finally:
        consumer.close()
        sink.flush()
    if print_grids:
        for grid in app._grids.values():
            rows = sorted(((key, grid._rows[key]) for key in grid._rows), key=lambda kv: str(kv[0]))
            print(json.dumps({"grid": grid.name, "rows": rows}))
    return status


def _to_records(messages, KafkaError) -> "tuple[list[str], list[tuple]]":
    """confluent-kafka messages -> (topic table, records) in the IPC runner's shape."""
    names: list = []
    index: dict = {}
    records = []
    for message in messages:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                print(f"aerogrid: kafka: {error}", file=sys.stderr)
            continue
        name = message.topic()
        i = index.get(name)
        if i is None:
            i = index[name] = len(names)
            names.append(name)
        ts_type, ts = message.timestamp()
        records.append((i, message.partition(), message.offset(), ts if ts_type else -1,
                        message.key(), message.value(), tuple(message.headers() or ())))
    return names, records


def _print_error(error: dict) -> None:
    where = f"{error['topic']}[{error['partition']}]@{error['offset']}"
    print(f"aerogrid: {error['kind']} error in {error['handler']} at {where}: {error['error']}",
          file=sys.stderr)
    if error["kind"] == "handler":
        print(error["traceback"], end="", file=sys.stderr)
