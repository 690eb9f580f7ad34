"""Where mini-batches run and in what pieces.

Choosing workers for ``node_count`` and ``process_count_per_node`` on an existing
cluster, and cutting the mini-batches into packs (one Dask task each). Plain
functions of the scheduler's worker table: testable without a cluster.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from .. import _settings
from .._protocol import node_of
from ..config import ParallelRunConfig
from ..errors import JobError

__all__ = [
    "choose_workers",
    "iter_packs",
    "node_limits",
    "node_of",
    "pack_mini_batches",
    "select_workers",
    "workers_wanted",
]

logger = logging.getLogger("daskscore")


def select_workers(
    workers: dict[str, dict[str, Any]],
    node_count: int,
    process_count_per_node: int | None,
) -> list[str]:
    """At most ``node_count`` nodes and ``process_count_per_node`` workers on each."""
    nodes: dict[str, list[str]] = {}
    for address in sorted(workers):
        nodes.setdefault(node_of(address, workers[address]), []).append(address)
    chosen: list[str] = []
    for node in sorted(nodes)[:node_count]:
        members = nodes[node]
        chosen.extend(
            members[:process_count_per_node] if process_count_per_node else members
        )
    return chosen


def node_limits(
    workers: dict[str, dict[str, Any]],
    chosen: list[str],
    process_count_per_node: int | None,
) -> dict[str, int | None]:
    """The chosen nodes, and how many workers of each may load the script.

    A worker that joins one of them later (a nanny's replacement for a dead
    worker, named by its new address) takes over a free place: None when the
    job uses every worker of its nodes, else ``process_count_per_node``.
    """
    return {node_of(a, workers[a]): process_count_per_node for a in chosen}


def pack_mini_batches(
    todo: list,
    workers: int,
    max_pack: int | None = None,
    divisor: int | None = None,
) -> list[list]:
    """Split the mini-batches into packs, one Dask task each, in input order.

    Guided self-scheduling: each pack holds ``1 / divisor`` (a quarter) of what
    every worker would still get, at most ``max_pack`` (64) mini-batches; the
    defaults are the settings ``daskscore.pack.divisor`` and
    ``daskscore.pack.max-mini-batches``. So packs shrink as the queue drains. Big
    packs early keep the scheduler's work small and let the runner prefetch
    within a pack; single mini-batches at the end keep every worker busy until
    the last one is done instead of one worker finishing a big pack alone.
    """
    return list(iter_packs(todo, len(todo), workers, max_pack, divisor))


def iter_packs(
    todo: Iterable,
    count: int,
    workers: int,
    max_pack: int | None = None,
    divisor: int | None = None,
) -> Iterator[list]:
    """:func:`pack_mini_batches` of ``count`` mini-batches read from an iterable,
    one pack at a time (a plan of a million mini-batches is never a list)."""
    if max_pack is None:
        max_pack = _settings.get("pack.max-mini-batches")
    if divisor is None:
        divisor = _settings.get("pack.divisor")
    items = iter(todo)
    left, workers = count, max(1, workers)
    while True:
        size = max(1, min(max_pack, left // (workers * divisor)))
        pack = list(itertools.islice(items, size))
        if not pack:
            return
        yield pack
        left -= len(pack)


def workers_wanted(cfg: ParallelRunConfig) -> int:
    """Worker processes of an embedded cluster: nodes x processes, or the cores."""
    if cfg.process_count_per_node:
        return cfg.node_count * cfg.process_count_per_node
    return max(1, os.cpu_count() or 1)


def choose_workers(
    client: Any, cfg: ParallelRunConfig, wait_s: float, poll_s: float = 0.5
) -> tuple[list[str], list[str], dict[str, int | None]]:
    """Workers of an existing cluster this job may use (node_count x processes).

    Waits up to ``wait_s`` for enough nodes to join. Returns the chosen workers'
    addresses, their names, and the chosen nodes with their limits
    (:func:`node_limits`): names survive a nanny's restart of a worker only when
    it has a name of its own, nodes always do.

    Raises
    ------
    JobError
        Fewer than ``node_count`` nodes after waiting.
    """
    deadline = time.monotonic() + wait_s
    while True:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        chosen = select_workers(workers, cfg.node_count, cfg.process_count_per_node)
        nodes = {node_of(a, workers[a]) for a in chosen}
        if len(nodes) >= cfg.node_count and chosen:
            break
        if time.monotonic() >= deadline:
            raise JobError(
                f"node_count={cfg.node_count} but the cluster at "
                f"{client.scheduler.address} has {len(nodes)} node(s) with "
                f"{len(workers)} worker(s) after waiting {wait_s:g} s; "
                "start more workers, lower node_count, or set the Dask "
                "setting daskscore.worker-wait (DASK_DASKSCORE__WORKER_WAIT) "
                "to wait longer"
            )
        time.sleep(poll_s)
    extra = len(workers) - len(chosen)
    if extra:
        logger.info(
            "using %d of the cluster's %d workers (node_count=%d, "
            "process_count_per_node=%s)",
            len(chosen),
            len(workers),
            cfg.node_count,
            cfg.process_count_per_node,
        )
    names = [str(workers[a].get("name", a)) for a in chosen]
    return chosen, names, node_limits(workers, chosen, cfg.process_count_per_node)

