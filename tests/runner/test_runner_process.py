"""The runner's own rules, without a cluster: which exceptions retire a runner,
how a refused return value is explained, how memory is measured and capped."""

from __future__ import annotations

import subprocess
import sys

import pytest

from daskscore.runner.process import bad_return, peak_rss_mib, unusable_after


@pytest.mark.parametrize("exc, name", [
    (MemoryError("out"), "MemoryError"),
    (SystemExit(42), "SystemExit"),
    (KeyboardInterrupt(), "KeyboardInterrupt"),
    (ValueError("bad"), ""),
    (RecursionError("deep"), ""),
])
def test_which_exceptions_leave_the_runner_unusable(exc, name):
    assert unusable_after(exc) == name


def test_a_memory_error_wrapped_by_a_library_still_counts():
    try:
        try:
            raise MemoryError("inner")
        except MemoryError as inner:
            raise RuntimeError("allocation failed") from inner
    except RuntimeError as outer:
        assert unusable_after(outer) == "MemoryError"


def test_a_refused_return_says_what_it_was_and_what_to_return():
    gen = bad_return(x for x in [1])
    assert gen.startswith("run() returned a generator; return a list, tuple or ")
    assert "wrap it in list()" in gen
    assert bad_return(None).startswith("run() returned None;")
    assert bad_return({"a": 1}).startswith("run() returned a dict;")
    assert bad_return(7).startswith("run() returned an int;")


def test_peak_rss_grows_with_what_is_allocated():
    code = (
        "from daskscore.runner.process import peak_rss_mib\n"
        "before = peak_rss_mib()\n"
        "blob = b'x' * (64 << 20)\n"
        "print(before, peak_rss_mib())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True, timeout=120)
    before, after = map(float, out.stdout.split())
    assert 0 < before
    assert after - before >= 60
    assert peak_rss_mib() > 0


def test_the_memory_limit_turns_a_big_allocation_into_a_memory_error():
    code = (
        "from daskscore.runner.process import limit_memory\n"
        "limit_memory(1 << 30)\n"
        "try:\n"
        "    bytearray(2 << 30)\n"
        "except MemoryError:\n"
        "    print('MemoryError')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.strip() == "MemoryError"


def test_local_paths_are_split_without_a_filesystem_lookup_and_still_checked(
        tmp_path):
    from daskscore.io.files import plain_local, remote_paths, split_local

    there = tmp_path / "a.png"
    there.write_bytes(b"x")
    gone = str(tmp_path / "deleted-after-planning.png")
    paths = (str(there), gone, f"file://{there}", "memory://bucket/b.png")
    assert plain_local(str(there), {}) and not plain_local(f"file://{there}", {})
    assert not plain_local(str(there), {"anon": True})  # options: fsspec decides
    good, missing, remote = split_local(paths, {})
    assert good == [str(there), str(there)]
    assert missing == [gone]
    assert remote == ["memory://bucket/b.png"]
    assert remote_paths(paths, {}) == ["memory://bucket/b.png"]
