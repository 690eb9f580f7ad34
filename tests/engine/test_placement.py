"""Which workers a job uses and how its mini-batches are cut into packs."""

from __future__ import annotations

import os

import pytest

import daskscore as ds
from daskscore.engine.placement import (
    choose_workers,
    node_of,
    pack_mini_batches,
    select_workers,
    workers_wanted,
)
from daskscore.errors import JobError


def cfg(**kw) -> ds.ParallelRunConfig:
    return ds.ParallelRunConfig(entry_script="score.py", **kw)


def worker_table(*names_and_hosts):
    return {
        f"tcp://{host}:{4000 + i}": {"name": name, "host": host}
        for i, (name, host) in enumerate(names_and_hosts)
    }


def test_workers_named_node_dash_n_form_node_node():
    assert node_of("tcp://10.0.0.1:1", {"name": "gpu-a-3", "host": "10.0.0.1"}) == (
        "gpu-a"
    )
    # unnamed workers belong to their host
    assert node_of("tcp://10.0.0.1:1", {"name": "tcp://10.0.0.1:1"}) == "10.0.0.1"


def test_select_takes_node_count_nodes_and_processes_on_each():
    table = worker_table(("a-0", "h1"), ("a-1", "h1"), ("b-0", "h2"), ("b-1", "h2"))
    chosen = select_workers(table, node_count=1, process_count_per_node=1)
    assert len(chosen) == 1 and table[chosen[0]]["name"] == "a-0"
    assert len(select_workers(table, 2, None)) == 4
    assert len(select_workers(table, 2, 1)) == 2


def test_workers_wanted_embedded():
    assert workers_wanted(cfg(node_count=2, process_count_per_node=3)) == 6
    assert workers_wanted(cfg()) == max(1, os.cpu_count() or 1)


class _Client:
    """The two things choose_workers asks of a distributed.Client."""

    def __init__(self, tables):
        self.tables = list(tables)
        self.scheduler = type("S", (), {"address": "tcp://sched:8786"})()

    def scheduler_info(self, n_workers=-1):
        table = self.tables.pop(0) if len(self.tables) > 1 else self.tables[0]
        return {"workers": table}


def test_choose_workers_waits_for_enough_nodes_and_returns_names():
    one = worker_table(("a-0", "h1"))
    two = worker_table(("a-0", "h1"), ("b-0", "h2"))
    chosen, names, nodes = choose_workers(
        _Client([one, one, two]), cfg(node_count=2), wait_s=5, poll_s=0.01
    )
    assert sorted(names) == ["a-0", "b-0"] and len(chosen) == 2
    assert nodes == {"a": None, "b": None}


def test_choose_workers_gives_up_with_a_clear_error():
    with pytest.raises(JobError, match=r"node_count=3 but the cluster at "
                       r"tcp://sched:8786 has 1 node\(s\)"):
        choose_workers(_Client([worker_table(("a-0", "h1"))]), cfg(node_count=3),
                       wait_s=0.05, poll_s=0.01)


def test_packs_shrink_towards_the_end_and_keep_order():
    todo = list(range(1000))
    packs = pack_mini_batches(todo, workers=2)
    assert [x for p in packs for x in p] == todo
    sizes = [len(p) for p in packs]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 1 and max(sizes) <= 64


def test_node_limits_let_a_replacement_take_a_free_place():
    from daskscore.engine.placement import node_limits

    table = worker_table(("tcp://h1:4000", "h1"), ("tcp://h1:4001", "h1"),
                         ("b-0", "h2"), ("b-1", "h2"))
    chosen = select_workers(table, node_count=2, process_count_per_node=1)
    assert node_limits(table, chosen, 1) == {"h1": 1, "b": 1}
    assert node_limits(table, select_workers(table, 2, None), None) == {
        "h1": None, "b": None}
