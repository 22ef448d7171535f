"""Server-side batching (``--enable_batching``): concurrent requests share one model call.

Requests for the same model version and signature wait in one queue. A batch
closes when its rows reach ``max_batch_size`` or when the oldest request has
waited ``batch_timeout_micros``; its inputs are concatenated along dimension 0,
the signature runs once, and each request gets its own rows of every output.

Requests merge only when their inputs agree beyond the batch dimension, or,
with ``pad_variable_length_inputs``, when they agree in rank and dtype: then
shorter inputs are padded with zeros (empty strings) to the longest. With
``allowed_batch_sizes`` a batch is padded up to the next allowed size with
copies of its first row. A request with more rows than ``max_batch_size``, or
a signature whose tensors have no free batch dimension, is run on its own.
More than ``max_enqueued_batches`` batches waiting answers UNAVAILABLE, as
TF Serving does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mlcycle.common.errors import InvalidInput, MlcycleError, Unavailable
from mlcycle.modelserver import metrics
from mlcycle.modelserver.config import BatchOptions
from mlcycle.modelserver.servable import Servable, Signature

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


@dataclass
class _Task:
    arrays: Arrays
    rows: int
    shape_key: tuple[object, ...]
    enqueued: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    outputs: Arrays | None = None
    error: BaseException | None = None


class Batcher:
    """The batch queues of every (version, signature), created on first use."""

    def __init__(self, options: BatchOptions) -> None:
        self.options = options
        self._queues: dict[tuple[int, str], _Queue] = {}
        self._lock = threading.Lock()
        self._closed = False

    def run(self, servable: Servable, signature: Signature, arrays: Arrays) -> Arrays:
        """The outputs for ``arrays``, computed in a batch with other requests when possible."""
        rows = _rows(arrays)
        if rows is None or not signature.batchable or rows > self.options.max_batch_size:
            return signature.run(arrays)
        queue = self._queue(servable, signature)
        return queue.submit(arrays, rows)

    def release(self, servable: Servable) -> None:
        """Drop the queues of an unloaded version (their threads finish queued work first)."""
        with self._lock:
            keys = [key for key in self._queues if key[0] == id(servable)]
            queues = [self._queues.pop(key) for key in keys]
        for queue in queues:
            queue.close()

    def close(self) -> None:
        """Stop every queue."""
        with self._lock:
            self._closed = True
            queues, self._queues = list(self._queues.values()), {}
        for queue in queues:
            queue.close()

    def _queue(self, servable: Servable, signature: Signature) -> _Queue:
        key = (id(servable), signature.key)
        queue = self._queues.get(key)
        if queue is not None:
            return queue
        with self._lock:
            if self._closed:
                raise Unavailable("the model server is stopping")
            queue = self._queues.get(key)
            if queue is None:
                queue = _Queue(servable, signature, self.options)
                self._queues[key] = queue
            return queue


def _rows(arrays: Mapping[str, np.ndarray]) -> int | None:
    """The batch size all inputs share, or None when they do not share one."""
    sizes = {array.shape[0] if array.ndim else None for array in arrays.values()}
    if len(sizes) != 1:
        return None
    (size,) = sizes
    return size if size else None


class _Queue:
    """One (version, signature) queue and the threads that turn it into model calls."""

    def __init__(self, servable: Servable, signature: Signature, options: BatchOptions) -> None:
        self.servable = servable
        self.signature = signature
        self.options = options
        self._tasks: deque[_Task] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{servable.name}-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, arrays: Arrays, rows: int) -> Arrays:
        task = _Task(arrays, rows, self._shape_key(arrays))
        limit = self.options.max_enqueued_batches * self.options.max_batch_size
        with self._cond:
            if self._closed:
                raise Unavailable("the model version was unloaded; retry")
            if self._queued_rows + rows > limit:
                raise Unavailable(QUEUE_FULL)
            self._tasks.append(task)
            self._queued_rows += rows
            self._cond.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        assert task.outputs is not None
        return task.outputs

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _shape_key(self, arrays: Arrays) -> tuple[object, ...]:
        if self.options.pad_variable_length_inputs:
            return tuple((name, a.dtype.str, a.ndim) for name, a in sorted(arrays.items()))
        return tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(arrays.items()))

    # -- the batch threads ---------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _next_batch(self) -> list[_Task] | None:
        max_rows = self.options.max_batch_size
        with self._cond:
            while not self._tasks:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = self._tasks[0].enqueued + self.options.batch_timeout_s
            while self._queued_rows < max_rows and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._tasks:
                    break
                self._cond.wait(remaining)
            return self._take(max_rows)

    def _take(self, max_rows: int) -> list[_Task] | None:
        if not self._tasks:
            return None if self._closed else []
        head = self._tasks.popleft()
        batch, rows = [head], head.rows
        while self._tasks:
            task = self._tasks[0]
            if task.shape_key != head.shape_key or rows + task.rows > max_rows:
                break
            batch.append(self._tasks.popleft())
            rows += task.rows
        self._queued_rows -= rows
        return batch

    def _execute(self, batch: list[_Task]) -> None:
        if not batch:
            return
        try:
            rows = sum(task.rows for task in batch)
            size = self._padded_size(rows)
            merged = {
                name: _merge([t.arrays[name] for t in batch], size) for name in batch[0].arrays
            }
            metrics.observe_batch(self.servable.name, self.servable.version, rows, len(batch))
            outputs = self.signature.run(merged)
            self._split(batch, outputs, size)
        except BaseException as exc:  # every waiting request must learn what happened
            if not isinstance(exc, MlcycleError):
                log.exception("a batched call of %s failed", self.servable.name)
            for task in batch:
                task.error = exc
        finally:
            for task in batch:
                task.done.set()

    def _padded_size(self, rows: int) -> int:
        for allowed in self.options.allowed_batch_sizes:
            if allowed >= rows:
                return allowed
        return rows

    def _split(self, batch: list[_Task], outputs: Arrays, size: int) -> None:
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != size:
                raise InvalidInput(
                    f"output {name} of signature {self.signature.key!r} has "
                    f"{'no batch dimension' if array.ndim == 0 else f'{array.shape[0]} rows'} "
                    f"for a batch of {size}; the model cannot be batched"
                )
        start = 0
        for task in batch:
            end = start + task.rows
            task.outputs = {name: array[start:end] for name, array in outputs.items()}
            start = end


def _merge(arrays: list[np.ndarray], size: int) -> np.ndarray:
    """Rows of ``arrays`` stacked into one of ``size`` rows, padded where shapes differ."""
    inner = tuple(max(dims) for dims in zip(*(a.shape[1:] for a in arrays), strict=True))
    rows = sum(a.shape[0] for a in arrays)
    if all(a.shape[1:] == inner for a in arrays) and size == rows:
        return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    fill = b"" if arrays[0].dtype.kind == "O" else 0
    merged = np.full((size, *inner), fill, dtype=arrays[0].dtype)
    offset = 0
    for array in arrays:
        index = (slice(offset, offset + array.shape[0]),) + tuple(
            slice(0, d) for d in array.shape[1:]
        )
        merged[index] = array
        offset += array.shape[0]
    if size > rows:
        merged[rows:] = merged[0]  # pad up to an allowed batch size with the first row
    return merged
