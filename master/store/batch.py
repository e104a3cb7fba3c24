"""Group commit for creates of best-effort kinds (Events): one etcd transaction for a burst.

A thousand pods scheduled in a second bring four thousand Events (SuccessfulCreate,
Scheduled, Created, Started), half of all the writes a pod costs. Each on its own
is an etcd round trip, a raft entry and a gRPC call's overhead in the master.
`CreateBatcher.create()` queues the object; one writer task takes everything
queued (up to `max_batch`) and writes it with `Store.create_many`, and whatever
arrives while that transaction is in flight goes into the next one. A lone
create is written at once: batching only happens when writes pile up, so it
adds no latency when the master is idle.

The price is that objects written together share a resourceVersion, which is
why only Events go through here: they are diagnostics, and no controller
resumes a watch on them.

One bad object must not fail the others queued with it. A transaction holds at
most `max_batch` objects and `max_bytes` of them (etcd refuses requests over
1.5 MiB), and when etcd refuses the transaction anyway (a taken name, or too
large), `Store.create_many` creates each on its own: only the bad one fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from kybernetes.core.api.errors import ApiError
from kybernetes.core.api.kinds import ApiObject
from kybernetes.master.store.etcd import Store

# etcd refuses transactions with more than --max-txn-ops (128 by default) operations per branch.
MAX_BATCH = 100
# etcd refuses requests over --max-request-bytes (1.5 MiB by default): a transaction's objects stay under 1 MiB.
MAX_BATCH_BYTES = 1024 * 1024


class CreateBatcher:
    """Queues creates and writes them in transactions of up to `max_batch` objects."""

    def __init__(self, *, store: Store, max_batch: int = MAX_BATCH, max_bytes: int = MAX_BATCH_BYTES) -> None:
        self.store = store
        self.max_batch = max_batch
        self.max_bytes = max_bytes
        self._waiting: list[tuple[ApiObject, int, asyncio.Future[ApiObject]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.transactions = 0  # for tests and metrics

    async def create(self, obj: ApiObject, *, lease: int = 0) -> ApiObject:
        """Create `obj` (with `lease`), together with whatever else is waiting; raises what its create would."""
        future: asyncio.Future[ApiObject] = asyncio.get_running_loop().create_future()
        self._waiting.append((obj, lease, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            count, size = 0, 0
            for obj, _, _ in self._waiting[:self.max_batch]:
                size += obj.ByteSize()
                if count and size > self.max_bytes:
                    break
                count += 1
            batch = self._waiting[:count]
            del self._waiting[:count]
            await self._write(batch)

    async def _write(self, batch: Sequence[tuple[ApiObject, int, asyncio.Future[ApiObject]]]) -> None:
        self.transactions += 1
        try:
            results = await self.store.create_many([(obj, lease) for obj, lease, _ in batch])
        except Exception as err:  # the whole transaction failed (etcd away): every caller gets the error
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller gave up (cancelled); the object may still have been written
                continue
            if isinstance(result, ApiError):
                future.set_exception(result)
            else:
                future.set_result(result)
