"""Where mini-batches run and in what pieces.

Choosing workers for ``node_count`` and ``process_count_per_node`` on an existing
cluster, and cutting the mini-batches into packs (one Dask task each). Plain
functions of the scheduler's worker table: testable without a cluster.
"""

from __future__ import annotations

from typing import Any

from .. import _settings

__all__ = ["node_of", "pack_mini_batches", "select_workers"]

def node_of(address: str, info: dict[str, Any]) -> str:
    """The node a worker belongs to.

    ``dask worker --name NODE --nworkers N`` names its workers ``NODE-0`` ..
    ``NODE-<N-1>`` (and ``NODE`` when N is 1): those form node NODE, even when
    several nodes share a host (as in tests on one machine). Workers without a
    name of their own (named by their address) belong to their host.
    """
    name = str(info.get("name", ""))
    host = str(info.get("host") or address.split("://")[-1].rsplit(":", 1)[0])
    if not name or "://" in name or name == address or name.startswith(host + ":"):
        return host
    prefix, sep, tail = name.rpartition("-")
    if sep and tail.isdigit() and prefix:
        return prefix
    return name


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
    if max_pack is None:
        max_pack = _settings.get("pack.max-mini-batches")
    if divisor is None:
        divisor = _settings.get("pack.divisor")
    packs: list[list] = []
    start, workers = 0, max(1, workers)
    while start < len(todo):
        left = len(todo) - start
        size = max(1, min(max_pack, left // (workers * divisor)))
        packs.append(todo[start : start + size])
        start += size
    return packs
