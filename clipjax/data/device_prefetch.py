"""Double buffering of the train loop's input: each batch is put on device `depth - 1` steps before the step that
takes it, so its host-to-device copy overlaps the running step instead of following it.

The data checkpoint stays exact: the iterator's state is recorded right after each batch is drawn, and
`get_state` returns the state after the last batch handed to the loop, not after the ones waiting on device, so a
resumed run continues with the first batch no step has taken.
"""
from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterator
from typing import Any


class DevicePrefetch:
    """`next()` -> `put(batch)` of the iterator's next batch, with `depth` batches already put (depth >= 1)."""

    def __init__(self, iterator: Iterator, put: Callable[[Any], Any], depth: int = 2):
        if depth < 1:
            raise ValueError(f"prefetch depth {depth}: expected >= 1")
        self.iterator, self.put, self.depth = iterator, put, depth
        self.queue: collections.deque = collections.deque()
        self.state = iterator.get_state()
        self.exhausted = False

    def __iter__(self):
        return self

    def __next__(self):
        while len(self.queue) < self.depth and not self.exhausted:
            try:
                batch = next(self.iterator)
            except StopIteration:
                self.exhausted = True
                break
            self.queue.append((self.put(batch), self.iterator.get_state()))
        if not self.queue:
            raise StopIteration
        batch, self.state = self.queue.popleft()
        return batch

    def get_state(self) -> bytes:
        """The iterator's state after the last batch `next()` returned (JSON bytes, grain's checkpoint form for
        iterators that are not grain DatasetIterators)."""
        return json.dumps(self.state).encode()

    def __getattr__(self, name: str):
        return getattr(self.iterator, name)  # e.g. `skipped`, read by pipeline.data_metrics
