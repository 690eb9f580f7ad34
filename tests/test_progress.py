"""The progress bar and lines of a resumed job: resumed counted from the start."""

from __future__ import annotations

import io

from daskscore.progress import JobProgress, TextProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def resumed_progress() -> JobProgress:
    p = JobProgress(total_mini_batches=40, total_items=400)
    p.done_mini_batches, p.succeeded_items = 12, 120
    p.resumed_mini_batches, p.resumed_items = 12, 120
    return p


def test_the_bar_starts_at_the_resumed_count_and_says_so():
    stream, p = Terminal(), resumed_progress()
    bar = TextProgress(stream)
    bar.start(p, None)
    text = stream.getvalue()
    assert "12 resumed" in text and "12/40" in text
    bar.finish(p, None)


def test_the_line_says_how_many_were_resumed_and_leaves_them_out_of_the_rate():
    p = resumed_progress()
    assert "Processed 12 of 40 mini-batches (12 resumed), 120/400 items" in p.line()
    assert p.eta_seconds is None  # nothing scored in this run yet: no rate
    assert p.items_per_second == 0.0
    p.done_mini_batches, p.succeeded_items = 13, 130
    assert p.eta_seconds is not None and p.items_per_second > 0
