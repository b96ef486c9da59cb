"""Single mode's model keeping: restore the newest model, write the parts a batch changed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from consumer.core import Core
from consumer.sink import InRecord, OutRecord, Transport
from consumer.state import BadRecords, ModelTracker, restore_model
from segmenter.pipeline import OutputSink

log = logging.getLogger(__name__)


class SnapshotKeeper:
    """The :class:`consumer.core.ModelKeeper` of single mode: the model lives in its parts on the model topic.

    Parameters
    ----------
    instance_id
        Names this writer's parts (``<instance id>/<part>``).
    model_topic
        Where the parts go.
    """

    def __init__(self, instance_id: str, model_topic: str) -> None:
        self._topic = model_topic
        self._tracker = ModelTracker(instance_id)
        self._bad = BadRecords()

    def restore(self, core: Core, models: Sequence[InRecord]) -> bytes | None:
        """The newest model that loads (or that the core already holds) wins."""
        fresh = not self._tracker.digests
        chosen = restore_model(core, models, self._tracker, self._bad)
        if chosen is None:
            if fresh:
                log.info("no valid model record on %s: starting with a fresh model", self._topic)
            return None
        return chosen.value

    def follow(self, core: Core, transport: Transport) -> None:
        """Single mode learns itself: there is nothing to follow."""

    def switch(self, core: Core, sink: OutputSink) -> None:
        """Single mode learns itself: there is nothing to switch to."""

    def records(self, core: Core) -> list[OutRecord]:
        """The model parts that changed; the partitions' clocks travel in the ``core`` part."""
        core.take_dirty_clocks()
        return self._tracker.records(core.model_parts(), self._topic)

    def discard(self, core: Core) -> None:
        """Every part is written again at the next commit."""
        self._tracker.reset()

    def reset(self) -> None:
        """Nothing written or loaded yet."""
        self._tracker.reset()
