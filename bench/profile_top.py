"""Top entries of a py-spy raw profile, per process kind (client, worker, runner).

    py-spy record --subprocesses --format raw -o prof.txt -- \
        python bench/bench_files.py --child --variant daskscore-trivial \
        --mini-batch-size 100
    python bench/profile_top.py prof.txt --top 15

Prints, for each kind of process, its share of the samples and the functions with
the most samples (inclusive: the function or what it calls), idle waits left out.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

_IDLE = re.compile(
    r"\((?:threading|selectors|queue|asyncio/base_events|socket|subprocess)\.py\)|"
    r"^(?:wait|select|poll|_recv|recv_bytes|_poll|_wait_for_tstate_lock) "
)


def _kind(process: str) -> str:
    if "daskscore.runner" in process:
        return "runner"
    if "dask_spec" in process or "distributed.cli" in process:
        return "worker"
    return "client"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    inclusive: dict[str, Counter] = defaultdict(Counter)
    self_time: dict[str, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    with open(args.profile) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            # py-spy --subprocesses nests the processes: parent;child;grandchild
            procs = [i for i, fr in enumerate(frames) if fr.startswith("process ")]
            kind = _kind(frames[procs[-1]]) if procs else "client"
            frames = frames[procs[-1] :] if procs else frames
            n = int(count)
            if _IDLE.search(frames[-1]):
                continue  # waiting, not working
            totals[kind] += n
            self_time[kind][frames[-1]] += n
            for frame in set(frames[1:]):
                inclusive[kind][frame] += n
    for kind, total in totals.most_common():
        print(f"\n## {kind}: {total} busy samples")
        print("inclusive:")
        for frame, n in inclusive[kind].most_common(args.top):
            print(f"  {100 * n / total:5.1f}%  {frame[:150]}")
        print("self:")
        for frame, n in self_time[kind].most_common(args.top):
            print(f"  {100 * n / total:5.1f}%  {frame[:150]}")


if __name__ == "__main__":
    main()
