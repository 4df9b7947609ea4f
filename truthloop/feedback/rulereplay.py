"""The fallback's rules on a backtest's episodes: the labeled records of each episode read from
the store in chunks and replayed (`core.rulehistory`), never all in memory, each chunk in a
worker thread (compiling and evaluating CEL is CPU work the event loop must not wait on).

The service's backtest endpoint and `truthloop backtest --store` both call `rules_on_history`
with the episodes the replay found.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from truthloop.core import rulehistory
from truthloop.core.backtest import Episode
from truthloop.core.rulehistory import RulesVsModel
from truthloop.core.spec import MonitorSpec
from truthloop.feedback.store.interface import DatasetQuery, Store

CHUNK = 2000
"""Records read at a time."""


async def rules_on_history(
    store: Store,
    monitor_id: int,
    spec: MonitorSpec,
    episodes: Sequence[Episode],
    chunk: int = CHUNK,
) -> RulesVsModel | None:
    """The spec's rules against the model on the labeled records of `episodes` (a uniform
    sample of them beyond `rulehistory.MAX_JUDGED`: `sample_rate` of the episodes' predictions);
    None when the spec has no rules (nothing would have answered in the model's place)."""
    if not spec.fallback.rules:
        return None
    judge = await asyncio.to_thread(rulehistory.judge, spec)
    rate = rulehistory.sample_rate(judge, sum(e.predictions for e in episodes))
    tally = rulehistory.Tally(judge, rate)
    for episode in episodes:
        query = DatasetQuery(monitor_id, episode.period.start, episode.period.end)
        async for records in store.chunks(query, chunk):
            await asyncio.to_thread(tally.add, records)
    return rulehistory.result(tally, spec)
