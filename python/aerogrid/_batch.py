"""Processing one batch of records: the part both runners (IPC and standalone) share."""

from ._stream import HandlerError

__all__ = ["BatchProcessor", "HandlerError"]


class BatchProcessor:
    """Feeds batches to an app's stream handlers and collects what they changed.

    A record is a tuple ``(topic_index, partition, offset, timestamp_ms, key, value,
    headers)`` where ``topic_index`` points into the batch's topic list. Each handler sees
    its topic's records in order; handlers run one after another, in declaration order.
    """

    def __init__(self, app) -> None:
        self.app = app
        self._streams_by_topic: dict = {}
        for stream in app._streams:
            self._streams_by_topic.setdefault(stream.topic.name, []).append(stream)
        for grid in app._grids.values():
            if grid._dirty:
                # Under the supervisor a grid starts from its checkpoint, so rows written
                # while the module was imported would have no defined place in it.
                raise RuntimeError(f"grid {grid.name!r} was written while the app was loading; "
                                   "write grids only from stream handlers")

    def consumes(self, topic: str) -> bool:
        return topic in self._streams_by_topic

    def process(self, topics: "list[str]", records: list) -> "list[dict]":
        """Run the handlers over one batch; return the error reports (decode and handler
        errors, one per failed record and handler). Raises HandlerError for a handler that
        cannot run at all."""
        errors: list = []
        if len(topics) == 1:
            groups = [(topics[0], records)]
        else:
            groups = [(name, [r for r in records if r[0] == index]) for index, name in enumerate(topics)]
        for name, group in groups:
            # Runners pass only topics that a stream consumes (the IPC runner checks).
            for stream in self._streams_by_topic.get(name, ()):
                stream._run_batch(group, errors)
        return errors

    def take_changes(self) -> "list[tuple[str, object, dict | None]]":
        """The grid writes since the last call, as ``(grid, key, row or None)``."""
        changes = []
        for grid in self.app._grids.values():
            if grid._dirty:
                name = grid.name
                changes.extend((name, key, row) for key, row in grid._take_changes().items())
        return changes
