"""What live progress costs: scheduler messages and wall time per job.

Workers send the records they commit to the client as Dask events
(``worker.feed``), at most one message per ``daskscore.live-interval`` per worker,
and none for a pack that ends before its worker's next message. This runs the
same jobs with three settings, side by side on one LocalCluster (2 single-threaded
worker processes; the scheduler in this process, where a SchedulerPlugin counts
the events of each job's live topic):

- ``250ms``: the default;
- ``0``: every record sent as soon as it is committed (no batching);
- ``off``: ``1e9`` s, so every summary is dropped when its pack returns: the
  count moves per pack only, as before live progress.

Jobs: ``tiny`` (10,000 mini-batches of one small file, ``run()`` returns its
input, default packs) and ``slow`` (96 mini-batches of 50 ms each in packs of 16).

    PYTHONPATH=. .venv/bin/python bench/bench_live.py [--tiny 10000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import tempfile
import time
from pathlib import Path

import dask
import psutil
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

import daskscore as ds
from daskscore import _settings  # noqa: F401 - the defaults before dask.config.set

SCRIPT = """
import os, time

def init():
    pass

def run(mini_batch):
    delay = float(os.environ.get("DELAY", "0"))
    if delay:
        time.sleep(delay)
    return [os.path.basename(p) for p in mini_batch]
"""

SETTINGS = {"250ms": "250ms", "0": 0, "off": 1e9}


class CountLive(SchedulerPlugin):
    """Counts the live topics' messages and the records they carry."""

    name = "count-live"

    def __init__(self) -> None:
        self.messages: collections.Counter = collections.Counter()
        self.records: collections.Counter = collections.Counter()

    def log_event(self, topic, msg) -> None:
        if isinstance(topic, str) and topic.endswith("-live"):
            self.messages[topic] += 1
            self.records[topic] += len(msg)


def _workers_cpu(client) -> float:
    """User + sys CPU seconds of the worker processes (not their runners)."""
    pids = client.run(os.getpid).values()
    return sum(sum(psutil.Process(p).cpu_times()[:2]) for p in pids)


def run_job(client, folder: Path, n_files: int, delay: float, packs: dict,
            interval) -> tuple[float, float, float]:
    out = folder / "out"
    shutil.rmtree(out, ignore_errors=True)
    cfg = ds.ParallelRunConfig(
        entry_script=str(folder / "score.py"), mini_batch_size="1",
        node_count=1, process_count_per_node=2,
        environment_variables={"DELAY": str(delay)},
    )
    step = ds.ParallelRunStep(
        name="live-bench", parallel_run_config=cfg,
        inputs=[ds.Dataset.File.from_files(str(folder / f"in-{n_files}"))],
        output=str(out),
    )
    with dask.config.set({"daskscore.live-interval": interval, **packs}):
        t0, cpu0, wcpu0 = time.perf_counter(), time.process_time(), _workers_cpu(client)
        result = step.run(client=client)
        elapsed = time.perf_counter() - t0
        cpu, wcpu = time.process_time() - cpu0, _workers_cpu(client) - wcpu0
    assert result.succeeded_items == n_files, result
    return elapsed, cpu, wcpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="daskscore-bench-live-"))
    (folder / "score.py").write_text(SCRIPT)
    jobs = {
        "tiny": (args.tiny, 0.0, {}),
        "slow": (96, 0.05, {"daskscore.pack.max-mini-batches": 16,
                            "daskscore.pack.divisor": 1}),
    }
    for n, _, _ in jobs.values():
        data = folder / f"in-{n}"
        data.mkdir(exist_ok=True)
        for i in range(n):
            (data / f"f{i:06d}.txt").write_text(f"{i}\n")
    counter = CountLive()
    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        cluster.scheduler.add_plugin(counter)
        run_job(client, folder, 96, 0.0, {}, "250ms")  # warm-up, not reported
        for job, (n, delay, packs) in jobs.items():
            for _ in range(args.repeat):
                for label, interval in SETTINGS.items():  # side by side
                    before = sum(counter.messages.values())
                    sent = sum(counter.records.values())
                    times = run_job(client, folder, n, delay, packs, interval)
                    rows.append((job, n, label, *times,
                                 sum(counter.messages.values()) - before,
                                 sum(counter.records.values()) - sent))
    shutil.rmtree(folder, ignore_errors=True)
    print(f"load average: {os.getloadavg()}")
    print("| job | mini-batches | live-interval | wall s | client+scheduler CPU s "
          "| workers CPU s | messages | records sent |")
    print("|---|---|---|---|---|---|---|---|")
    for job, n, label, elapsed, cpu, wcpu, messages, records in rows:
        print(f"| {job} | {n} | {label} | {elapsed:.2f} | {cpu:.2f} | {wcpu:.2f} "
              f"| {messages} | {records} |")


if __name__ == "__main__":
    main()
