"""Running the independent items of one batch on a few threads: the writer's results, score_request's ledger writes.

Items with the same key run one after the other, in order, on one thread; items with different keys run at once.
Each item's outcome, or the exception it raised, is kept in its place, so the caller decides what one failure
means for the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


def run_concurrently(
    items: Sequence[Item],
    work: Callable[[Item], Outcome],
    key: Callable[[Item], str | None],
    threads: int,
    name: str = "batch",
) -> list[Outcome | Exception]:
    """Runs ``work`` on every item, items with different keys at once and items with the same key in order;
    returns each item's outcome, or the exception it raised, in the order of ``items``. An item whose key is
    None stands alone."""
    groups: dict[object, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(key(item) or object(), []).append(index)
    outcomes: list[Outcome | Exception] = [RuntimeError("not run")] * len(items)

    def run(indexes: list[int]) -> None:
        for index in indexes:
            try:
                outcomes[index] = work(items[index])
            except Exception as exc:  # noqa: BLE001 - each item's failure is reported with its own outcome
                outcomes[index] = exc

    if len(groups) <= 1 or threads <= 1:
        for indexes in groups.values():
            run(indexes)
        return outcomes
    with ThreadPoolExecutor(max_workers=min(threads, len(groups)), thread_name_prefix=name) as pool:
        list(pool.map(run, groups.values()))
    return outcomes
