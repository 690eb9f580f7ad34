"""What the job page, its JSON route and /metrics cost the scheduler.

A ``dask scheduler`` process and a ``dask worker`` process (2 single-threaded
workers) on this machine; the same 10,000-mini-batch job (``trivial.py`` on
10,000 of the bench PNGs, ``mini_batch_size=1``) runs once per mode, side by
side on the same cluster, while something reads the scheduler's routes:

- ``nobody``: nothing reads them (the job still publishes its state);
- ``page``: the job page open in a browser: the page once, then its script's
  ``api/jobs`` every second (what ``scheduler/page.py`` does);
- ``json 10/s``: ``/daskscore/api/jobs`` ten times a second (ten open pages);
- ``metrics 1/s``: ``/metrics`` every second (Prometheus scrapes every 15 s by
  default).

The figure is the scheduler process's CPU (user + sys) during the job, and per
request: (mode - nobody) / requests.

    PYTHONPATH=. .venv/bin/python bench/bench_dashboard.py [--n 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
from distributed import Client

import daskscore as ds

HERE = Path(__file__).resolve().parent
PNG = Path(os.environ.get("BENCH_DATA", "/work/main/bench/data")) / "png"
BIN = Path(sys.executable).parent
MODES = {
    "nobody": (None, 0.0),
    "page": ("/daskscore/api/jobs", 1.0),
    "json 10/s": ("/daskscore/api/jobs", 0.1),
    "metrics 1/s": ("/metrics", 1.0),
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _poll(url: str, every: float, stop: threading.Event, count: list[int]) -> None:
    while not stop.wait(every):
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                resp.read()
            count[0] += 1
        except OSError:
            pass


BURST = 300


def _burst(url: str, pid: int) -> tuple[float, int]:
    """Scheduler CPU ms per request of ``url``, BURST requests in a row."""
    cpu0 = _cpu(pid)
    for _ in range(BURST):
        with urllib.request.urlopen(url, timeout=30) as resp:
            size = len(resp.read())
    return 1000 * (_cpu(pid) - cpu0) / BURST, size


def run_job(client, dashboard: str, sched_pid: int, data: Path, out: Path, mode):
    path, every = MODES[mode]
    shutil.rmtree(out, ignore_errors=True)
    cfg = ds.ParallelRunConfig(entry_script=str(HERE / "scripts" / "trivial.py"),
                               mini_batch_size="1", node_count=1,
                               process_count_per_node=2)
    step = ds.ParallelRunStep(name="dash-bench", parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(data))],
                              output=str(out))
    stop, count = threading.Event(), [0]
    poller = None
    if path:
        if mode == "page":
            urllib.request.urlopen(f"http://{dashboard}/daskscore/").read()
        url = f"http://{dashboard}{path}"
        poller = threading.Thread(target=_poll, daemon=True,
                                  args=(url, every, stop, count))
        poller.start()
    t0, cpu0 = time.perf_counter(), _cpu(sched_pid)
    result = step.run(client=client)
    cpu, wall = _cpu(sched_pid) - cpu0, time.perf_counter() - t0
    stop.set()
    if poller:
        poller.join()
    assert result.status == "Completed", result.reason
    return wall, cpu, count[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="daskscore-bench-dash-"))
    data = folder / "in"
    data.mkdir()
    for name in sorted(os.listdir(PNG))[: args.n]:
        os.symlink(PNG / name, data / name)
    port, dport = _port(), _port()
    dashboard = f"127.0.0.1:{dport}"
    sched = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1",
                              "--port", str(port), "--dashboard-address", dashboard],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = subprocess.Popen([str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{port}",
                                "--nworkers", "2", "--nthreads", "1",
                                "--host", "127.0.0.1", "--no-dashboard"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            # warm-up, not reported
            run_job(client, dashboard, sched.pid, data, folder / "out", "nobody")
            for mode in MODES:
                rows.append((mode, *run_job(client, dashboard, sched.pid, data,
                                            folder / "out", mode)))
            burst = {p: _burst(f"http://{dashboard}{p}", sched.pid)
                     for p in ("/daskscore/api/jobs", "/daskscore/", "/metrics")}
    finally:
        for proc in (workers, sched):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(folder, ignore_errors=True)
    base = rows[0][2]
    print(f"load average: {os.getloadavg()}")
    print("| mode | mini-batches | wall s | scheduler CPU s | requests "
          "| scheduler CPU ms per request |")
    print("|---|---|---|---|---|---|")
    for mode, wall, cpu, requests in rows:
        per = f"{1000 * (cpu - base) / requests:.2f}" if requests else "-"
        print(f"| {mode} | {args.n} | {wall:.1f} | {cpu:.2f} | {requests} | {per} |")
    print(f"\n{BURST} requests in a row, the finished job's state on the scheduler:")
    print("| route | scheduler CPU ms per request | bytes |")
    print("|---|---|---|")
    for path, (per, size) in burst.items():
        print(f"| {path} | {per:.2f} | {size} |")


if __name__ == "__main__":
    main()
