"""Large values between a worker and its runner go through a shared-memory file.

``pack`` writes a large value's buffers to a file once; ``unpack`` maps it
copy-on-write (the value stays writable) and removes the file. Small values, and
lists, go through the socket as they are.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from daskscore.runner import transfer


def _frame(rows: int) -> pd.DataFrame:
    frame = pd.DataFrame(np.arange(rows * 8, dtype="float32").reshape(rows, 8),
                         columns=[f"f{i}" for i in range(8)])
    frame.insert(0, "id", np.arange(rows))
    return frame


def test_a_large_frame_travels_through_a_file_that_is_removed(tmp_path):
    frame = _frame(100_000)
    shipped = transfer.pack(frame, str(tmp_path))
    assert isinstance(shipped, transfer.Shipped)
    assert os.path.isfile(shipped.path)
    assert len(shipped.payload) < 100_000  # the data is not in the pickle
    back = transfer.unpack(shipped)
    assert not os.path.exists(shipped.path)
    pd.testing.assert_frame_equal(back, frame)
    # writable, as a value unpickled from the socket is
    back.loc[0, "f0"] = -1.0
    back["f1"] *= 2
    assert back.loc[0, "f0"] == -1.0 and frame.loc[0, "f0"] == 0.0


def test_small_values_and_lists_are_sent_as_they_are(tmp_path):
    small = _frame(10)
    assert transfer.pack(small, str(tmp_path)) is small
    items = [f"path-{i}" for i in range(100_000)]
    assert transfer.pack(items, str(tmp_path)) is items
    assert transfer.pack(None) is None
    assert transfer.unpack(small) is small
    assert os.listdir(tmp_path) == []


def test_discard_removes_a_file_never_unpacked(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "_SHM", str(tmp_path / "no-shm"))
    shipped = transfer.pack(_frame(100_000), str(tmp_path))
    assert os.path.dirname(shipped.path) == str(tmp_path)  # fallback folder
    transfer.discard(shipped)
    assert os.listdir(tmp_path) == []


def test_files_of_dead_processes_are_swept(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setattr(transfer, "_SHM", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f"daskscore-value-{dead.stdout.strip()}-abc"
    stale.write_bytes(b"x")
    mine = transfer.pack(_frame(100_000))
    assert transfer.sweep_stale() == 1
    assert not stale.exists() and os.path.exists(mine.path)
    transfer.discard(mine)
