"""The runner: a child process of each Dask worker that holds the user's script.

Why a child process: a Python thread cannot be stopped, and a script may hang,
leak or crash (``os._exit``, a segfault in a native library). Running the script
in a child lets the worker kill it on ``run_invocation_timeout`` or notice its
death, restart it (which re-runs ``init()``), and go on with the next try, while
the Dask worker itself stays healthy and keeps its other work.

The child reads its own mini-batches (so tables never cross a process boundary),
calls ``run()``, and commits the output part itself. Messages with the worker go
over a ``multiprocessing.connection.Connection`` on an inherited socket:

worker -> runner: ``("run", spec, frame, try_no)``, ``("shutdown",)``
runner -> worker: ``("imported",)``, ``("import_error", problem, tb)``,
``("init_done", seconds)``, ``("init_error", summary, tb)``,
``("started", items)``, ``("done", outcome)``, ``("shutdown_done", error)``
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import logging
import os
import shutil
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

# Status names used in processed_mini-batches.csv
RUN_DONE = "RUN_DONE"
RUN_EXCEPTION = "RUN_EXCEPTION"
RUN_TIMEOUT = "RUN_TIMEOUT"
READ_ERROR = "READ_ERROR"
INIT_ERROR = "INIT_ERROR"


_PATH_MAP = ("", "")  # (worker-local copy of the source folder, the user's folder)


def _watch_parent(parent_pid: int) -> None:
    """Exit when the worker that started us is gone (we were re-parented)."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(3)
        time.sleep(0.5)


def user_traceback(exc: BaseException, script_path: str) -> str:
    """The traceback of an exception, starting at the user's own frames."""
    tb = exc.__traceback__
    frames = traceback.extract_tb(tb)
    # drop our own frames at the top: the user's code starts at the first frame
    # outside this module
    skip = 0
    for frame in frames:
        if frame.filename == __file__:
            skip += 1
        else:
            break
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames[skip:])
    lines += traceback.format_exception_only(type(exc), exc)
    text = "".join(lines)
    # show the user's own paths, not the worker-local copy of their folder
    bundle, source = _PATH_MAP
    return text.replace(bundle, source) if bundle else text


def error_line(exc: BaseException, script_path: str) -> str:
    """One line: the exception and where in the user's script it was raised."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if os.path.abspath(frame.filename) == os.path.abspath(script_path):
            where = f" (at {os.path.basename(script_path)}:{frame.lineno})"
            break
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return f"{type(exc).__name__}: {msg}{where}"[:500]


# Mini-batches whose inputs are read ahead from blob storage (see _Reader.prefetch)
_PREFETCHED_KINDS = ("files", "csv", "jsonl", "parquet")
# Bytes read past a mini-batch's end to find the end of its last row
_ROW_MARGIN = 1 << 17


def _open_range(fs, fpath: str, length: int):
    """Open a file to read about ``length`` bytes from some offset.

    Remote files (blob storage) are opened with a read-ahead block of about that
    size, so that a mini-batch is one ranged GET of its own bytes instead of the
    filesystem's default block (adlfs: 50 MiB, up to the end of the file).
    """
    from .storage import is_local

    if is_local(fs):
        return fs.open(fpath, "rb")
    return fs.open(
        fpath, "rb", block_size=max(length, 0) + _ROW_MARGIN, cache_type="readahead"
    )


class _Reader:
    """Turns a MiniBatchSpec into what run() receives.

    ``sources[i]`` holds the storage and read options of the step's input ``i``
    (a mini-batch's ``spec.source``): inputs on different accounts, or CSV files
    with different separators, are each read with their own.
    """

    def __init__(self, sources: list[dict[str, Any]], scratch_dir: str) -> None:
        self.sources = sources or [{"storage_options": {}, "read_options": {}}]
        self.scratch_dir = scratch_dir
        self._headers: dict[tuple[int, str], bytes] = {}
        self._table_key: tuple | None = None
        self._table = None
        self.downloaded: list[str] = []
        self.read_details = ""
        self._prefetched: dict[int, Any] = {}
        self._pool = None

    def _storage(self, spec) -> dict[str, Any]:
        return self.sources[getattr(spec, "source", 0)]["storage_options"]

    def _read_options(self, spec) -> dict[str, Any]:
        return self.sources[getattr(spec, "source", 0)]["read_options"]

    def read(self, spec) -> tuple[Any, int, str | None]:
        """Return (mini_batch, items, read_problem)."""
        if spec.kind == "error":
            return None, spec.items or 1, spec.error or "input could not be read"
        if spec.kind == "files":
            return self._files(spec)
        if spec.kind == "parquet":
            return self._parquet(spec)
        if spec.kind == "partition":
            return self._partition(spec)
        return self._text(spec)

    def _partition(self, spec):
        """The rows of one partition_keys combination, from every file."""
        import pandas as pd

        key = ("partition", getattr(spec, "source", 0), spec.paths)
        try:
            if key != self._table_key:
                self._table, self._table_key = None, None
                fmt = self._read_options(spec).get("format", "csv")
                frames = []
                for path in spec.paths:
                    kind = "parquet" if fmt == "parquet" else fmt
                    sub = type(spec)(
                        index=spec.index,
                        kind=kind,
                        paths=(path,),
                        start=0,
                        stop=1 << 62,
                        source=getattr(spec, "source", 0),
                    )
                    if kind == "parquet":
                        import pyarrow.parquet as pq

                        from .storage import url_to_fs

                        fs, fpath = url_to_fs(path, self._storage(spec))
                        with fs.open(fpath, "rb") as f:
                            frames.append(pq.read_table(f).to_pandas())
                        continue
                    frame, _, problem = self._text(sub)
                    if problem:
                        return None, spec.items or 1, problem
                    frames.append(frame)
                self._table = pd.concat(frames, ignore_index=True)
                self._table_key = key
            table = self._table
            mask = pd.Series(True, index=table.index)
            for column, value in spec.key_values:
                if value is None or (isinstance(value, float) and value != value):
                    mask &= table[column].isna()
                else:
                    mask &= table[column] == value
            frame = table[mask].reset_index(drop=True)
        except Exception as exc:  # noqa: BLE001 - unreadable data fails its mini-batch
            return None, spec.items or 1, f"{type(exc).__name__}: {exc}"
        return frame, len(frame), None

    def prefetch(self, spec) -> None:
        """Start reading the next mini-batch from blob storage in the background.

        Called with the next mini-batch of a pack while the current one is
        scored, so that ``run()`` seldom waits for the network: a FileDataset
        mini-batch's blobs are downloaded, a tabular one's bytes (CSV, JSON
        lines) or row groups (Parquet) fetched. Local files need nothing.
        """
        from .storage import is_local, url_to_fs

        if spec.index in self._prefetched or spec.kind not in _PREFETCHED_KINDS:
            return
        if spec.kind == "parquet" and spec.start > 0:
            return  # a later slice of row groups the mini-batch before reads
        remote = [
            p for p in spec.paths if not is_local(url_to_fs(p, self._storage(spec))[0])
        ]
        if not remote:
            return
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="daskscore-prefetch")
        if spec.kind == "files":
            job = (self._download, spec.index, remote, self._storage(spec))
        elif spec.kind == "parquet":
            job = (self._parquet_table, spec)
        else:
            job = (self._text_bytes, spec)
        self._prefetched[spec.index] = self._pool.submit(*job)

    def _ahead(self, spec):
        """The prefetched read of ``spec`` (a Future), or None.

        Reads prefetched for earlier mini-batches that were never asked for (a
        pack that stopped early) are dropped.
        """
        for index in [i for i in self._prefetched if i < spec.index]:
            stale = self._prefetched.pop(index)
            stale.cancel()
            # blobs downloaded for it go once the download is over
            folder = os.path.join(self.scratch_dir, "download", str(index))
            stale.add_done_callback(
                lambda _f, folder=folder: shutil.rmtree(folder, ignore_errors=True)
            )
        return self._prefetched.pop(spec.index, None)

    def _download(self, index: int, remote: list[str], options: dict[str, Any]):
        from .storage import download

        folder = os.path.join(self.scratch_dir, "download", str(index))
        return download(remote, folder, options)

    def _files(self, spec) -> tuple[list[str], int, str | None]:
        from .storage import is_local, url_to_fs

        good: list[str] = []
        missing: list[str] = []
        remote: list[str] = []
        for path in spec.paths:
            fs, fpath = url_to_fs(path, self._storage(spec))
            if is_local(fs):
                (good if os.path.isfile(fpath) else missing).append(fpath)
            else:
                remote.append(path)
        if remote:
            # blobs keep their relative paths below the mini-batch's folder, so
            # a/0.png and b/0.png stay apart; several download at once
            ahead = self._ahead(spec)
            if ahead is not None:
                local, errors = ahead.result()
            else:
                local, errors = self._download(spec.index, remote, self._storage(spec))
            for url, target in zip(remote, local):
                if target is None:
                    missing.append(url)
                else:
                    self.downloaded.append(target)
                    good.append(target)
            # why each blob failed, for logs/user/error/
            self.read_details = "\n".join(errors.values())
        problem = None
        if missing:
            shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
            problem = f"{len(missing)} file(s) cannot be read: {shown}"
        return good, len(spec.paths), problem

    def cleanup(self) -> None:
        for path in self.downloaded:
            try:
                os.remove(path)
            except OSError:
                pass
        self.downloaded.clear()

    def _parquet_table(self, spec):
        """The row groups a Parquet mini-batch needs, as one Arrow table."""
        import pyarrow.parquet as pq

        from .storage import url_to_fs

        fs, fpath = url_to_fs(spec.paths[0], self._storage(spec))
        # the footer, then the row groups' column chunks coalesced into a few
        # ranged reads: never the whole file for one mini-batch
        with _open_range(fs, fpath, 0) as f:
            return pq.ParquetFile(f, pre_buffer=True).read_row_groups(
                list(spec.row_groups)
            )

    def _parquet(self, spec):
        key = (getattr(spec, "source", 0), spec.paths[0], spec.row_groups)
        ahead = self._ahead(spec)
        try:
            if key != self._table_key:
                self._table, self._table_key = None, None
                table = ahead.result() if ahead else self._parquet_table(spec)
                self._table, self._table_key = table, key
            table = self._table.slice(spec.start, spec.stop - spec.start)
            frame = table.to_pandas()
        except Exception as exc:  # noqa: BLE001 - corrupt data fails its mini-batch
            return None, spec.items or 1, f"{type(exc).__name__}: {exc}"
        return frame, len(frame), None

    def _text_bytes(self, spec) -> bytes:
        """A CSV/JSON-lines mini-batch's rows as bytes (the CSV header first)."""
        from fsspec.utils import read_block

        from .storage import url_to_fs

        path = spec.paths[0]
        fs, fpath = url_to_fs(path, self._storage(spec))
        whole = spec.start == 0 and (
            spec.stop >= (1 << 62) or spec.stop >= fs.size(fpath)
        )
        if whole:
            import fsspec

            with fsspec.open(
                path, "rb", compression="infer", **self._storage(spec)
            ) as f:
                return f.read()
        length = spec.stop - spec.start
        with _open_range(fs, fpath, length) as f:
            data = read_block(f, spec.start, length, delimiter=b"\n")
        if (
            spec.kind == "csv"
            and self._read_options(spec).get("header", True)
            and spec.start > 0
        ):
            data = self._header(spec, fs, fpath) + data
        return data

    def _text(self, spec):
        import pandas as pd

        ahead = self._ahead(spec)
        try:
            data = ahead.result() if ahead else self._text_bytes(spec)
            if not data.strip():
                return pd.DataFrame(), 0, None
            if spec.kind == "csv":
                options = self._read_options(spec)
                header = options.get("header", True)
                frame = pd.read_csv(
                    io.BytesIO(data),
                    sep=options.get("separator", ","),
                    header=0 if header else None,
                )
            else:
                frame = pd.read_json(io.BytesIO(data), lines=True)
        except Exception as exc:  # noqa: BLE001 - unreadable data fails its mini-batch
            return None, 1, f"{type(exc).__name__}: {exc}"
        return frame, len(frame), None

    def _header(self, spec, fs, fpath: str) -> bytes:
        key = (getattr(spec, "source", 0), fpath)
        if key not in self._headers:
            with _open_range(fs, fpath, 0) as f:
                self._headers[key] = f.readline()
        return self._headers[key]


def _takes_context(func) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional)


def _configure_logging(setup: dict[str, Any]) -> logging.Logger:
    level = getattr(logging, setup["logging_level"], logging.INFO)
    fmt = logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [" + setup["agent_name"] + "] %(message)s"
    )
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.FileHandler(setup["entry_script_log"], encoding="utf-8")
    handler.setFormatter(fmt)
    root.addHandler(handler)
    root.setLevel(level)
    logger = logging.getLogger("daskscore.entry_script")
    logger.setLevel(level)
    return logger


class Runner:
    """State of the runner process: the imported script and how to run it."""

    def __init__(self, conn: Connection, setup: dict[str, Any]) -> None:
        self.conn = conn
        self.setup = setup
        self.module = None
        self.script_path = os.path.join(setup["bundle_dir"], setup["script_name"])
        self.reader = _Reader(setup["sources"], setup["working_dir"])
        from .sinks import PartWriter

        self.writer = PartWriter(
            setup["parts_url"],
            setup["output_format"],
            setup["output_storage_options"],
            setup["output_action"] == "append_row",
        )

    def load(self) -> bool:
        from . import entry_script

        setup = self.setup
        global _PATH_MAP
        entry_script._CONTEXT.update(setup["context"])
        from . import model

        model.STEP_MODEL_OPTIONS.update(setup.get("model_options", {}))
        _PATH_MAP = (setup["bundle_dir"], setup.get("source_display", ""))
        _configure_logging(setup)
        sys.path.insert(0, os.path.dirname(self.script_path))
        if setup["bundle_dir"] not in sys.path:
            sys.path.insert(0, setup["bundle_dir"])
        sys.argv = [self.script_path, *setup["arguments"]]
        name = os.path.splitext(os.path.basename(self.script_path))[0]
        try:
            spec = importlib.util.spec_from_file_location(name, self.script_path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - the user's import failed
            if isinstance(exc, SyntaxError):
                problem = f"syntax error at line {exc.lineno}: {exc.msg}"
            else:
                problem = f"import failed: {error_line(exc, self.script_path)}"
            self.conn.send(
                ("import_error", problem, user_traceback(exc, self.script_path))
            )
            return False
        missing = [f for f in ("init", "run") if not callable(getattr(module, f, None))]
        if missing:
            self.conn.send(
                (
                    "import_error",
                    f"defines no {' and no '.join(m + '()' for m in missing)}",
                    "",
                )
            )
            return False
        self.module = module
        self.conn.send(("imported",))
        start = time.perf_counter()
        try:
            module.init()
        except BaseException as exc:  # noqa: BLE001 - the user's init() failed
            self.conn.send(
                (
                    "init_error",
                    f"init() raised {error_line(exc, self.script_path)}",
                    user_traceback(exc, self.script_path),
                )
            )
            return False
        self.conn.send(("init_done", time.perf_counter() - start))
        self.takes_context = _takes_context(module.run)
        return True

    def run_one(self, spec, frame, try_no: int) -> dict[str, Any]:
        from .entry_script import MiniBatchContext

        t0 = time.perf_counter()
        if frame is not None:
            mini_batch, items, problem = frame, len(frame), None
        else:
            mini_batch, items, problem = self.reader.read(spec)
        read_s = time.perf_counter() - t0
        outcome: dict[str, Any] = {
            "items": items,
            "succeeded": 0,
            "failed": items,
            "read_seconds": read_s,
            "run_seconds": 0.0,
            "status": RUN_DONE,
            "error": "",
            "traceback": "",
            "has_output": False,
            "warning": "",
            "read_failed": 0,
        }
        if problem is not None:
            details, self.reader.read_details = self.reader.read_details, ""
            outcome.update(status=READ_ERROR, error=problem, traceback=details)
            if spec.kind != "files" or not mini_batch:
                self.conn.send(("started", items))
                return outcome
            # a FileDataset mini-batch still scores the files that can be read
            outcome["read_failed"] = items - len(mini_batch)
        self.conn.send(("started", items))
        if items == 0:
            outcome.update(failed=0)
            return outcome
        run_start = time.perf_counter()
        try:
            if self.takes_context:
                context = MiniBatchContext(
                    minibatch_index=spec.index, partition_key_value=dict(spec_key(spec))
                )
                result = self.module.run(mini_batch, context)
            else:
                result = self.module.run(mini_batch)
        except BaseException as exc:  # noqa: BLE001 - the user's run() failed
            outcome.update(
                run_seconds=time.perf_counter() - run_start,
                status=RUN_EXCEPTION,
                error=error_line(exc, self.script_path),
                traceback=user_traceback(exc, self.script_path),
            )
            return outcome
        finally:
            self.reader.cleanup()
        outcome["run_seconds"] = time.perf_counter() - run_start
        # the timeout covers run() only, not writing what it returned
        self.conn.send(("returned",))
        return self._account(spec, mini_batch, items, result, outcome, try_no)

    def _account(self, spec, mini_batch, items, result, outcome, try_no):
        from .sinks import is_dataframe

        if not (isinstance(result, list | tuple) or is_dataframe(result)):
            outcome.update(
                status=RUN_EXCEPTION,
                error=(
                    f"run() returned {type(result).__name__}; it must return a list, "
                    "tuple or pandas DataFrame with one element or row per "
                    "successful input"
                ),
            )
            return outcome
        scored = len(mini_batch)
        returned = len(result)
        succeeded = min(returned, scored)
        if returned > scored:
            outcome["warning"] = (
                f"run() returned {returned} results for {scored} inputs; counted "
                f"{scored} as succeeded, wrote all {returned}"
            )
        try:
            outcome["has_output"] = self.writer.commit(spec.index, result)
        except Exception as exc:  # noqa: BLE001 - user values that cannot be written
            outcome.update(
                status=RUN_EXCEPTION,
                error=f"run()'s result cannot be written: {type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(),
            )
            return outcome
        outcome["succeeded"] = succeeded
        outcome["failed"] = items - succeeded
        outcome["output_rows"] = returned
        return outcome

    def shutdown(self) -> str:
        fn = getattr(self.module, "shutdown", None)
        if not callable(fn):
            return ""
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - the user's shutdown() failed
            return f"shutdown() raised {error_line(exc, self.script_path)}"
        return ""


def spec_key(spec) -> dict[str, Any]:
    """The partition key values of a mini-batch (partition_keys), else empty."""
    return dict(getattr(spec, "key_values", ()) or ())


def main() -> None:
    fd = int(sys.argv[1])
    parent = int(sys.argv[2])
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    conn = Connection(fd)
    setup = conn.recv()
    runner = Runner(conn, setup)
    if not runner.load():
        conn.close()
        sys.stdout.flush()
        os._exit(1)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg[0] == "run":
            _, spec, frame, try_no = msg
            outcome = runner.run_one(spec, frame, try_no)
            conn.send(("done", outcome))
        elif msg[0] == "prefetch":  # no answer: the next mini-batch, fetched ahead
            try:
                runner.reader.prefetch(msg[1])
            except Exception:  # noqa: BLE001 - only a hint: the read will tell
                pass
        elif msg[0] == "shutdown":
            error = runner.shutdown()
            conn.send(("shutdown_done", error))
            break
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    conn.close()
    os._exit(0)


if __name__ == "__main__":
    main()
