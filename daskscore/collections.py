"""Inside a Dask pipeline: an entry script applied to any Dask DataFrame or Bag.

``ds.map_partitions(collection, parallel_run_config)`` gives a lazy collection of
the same kind whose partitions are what ``run()`` returned for the input's
partitions, one ``run()`` call per partition. The worker side is the step's own
(:mod:`daskscore.worker`): a :class:`~daskscore.worker.plugin.ScoringPlugin` per
scorer holds the runner process that ran ``init()`` once, and each partition is
one :func:`~daskscore.worker.tasks.score_partition` task, tried like a step's
mini-batch (``run_max_try``, ``run_invocation_timeout``), with ``run()``'s result
handed back instead of committed to an output folder.

The plugin is registered on the cluster when the collection is built (its name
is derived from the script's bytes and the settings, so two scripts in one graph
never share state) and stays until its workers close, or until the
:func:`scorer` context manager that holds it exits: either way the runners run
``shutdown()``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from typing import Any

from . import _settings
from ._protocol import JobSpec
from .config import ParallelRunConfig
from .datasets import _read_rows
from .engine.jobspec import model_options, models_env, public_model_entry
from .entry_script import bundle_entry_script
from .errors import ConfigError, EntryScriptError
from .output.parts import is_dataframe, result_frame
from .runner.transfer import DaskPiece, PartitionRead
from .worker.control import plugin_problem
from .worker.plugin import ScoringPlugin
from .worker.tasks import score_partition

__all__ = ["Scorer", "map_partitions", "scorer"]

# rows of the first partition scored on a worker to infer ``meta``
META_ROWS = 5
# (scheduler id, plugin name) of the plugins registered by this process
_REGISTERED: set[tuple[str, str]] = set()


def _client_of(client: Any) -> Any:
    if client is not None:
        return client
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        raise ConfigError(
            "client",
            None,
            "ds.map_partitions needs a Dask distributed cluster: create a "
            "distributed.Client first, or pass client=",
        ) from None


def _key(client: Any, name: str) -> tuple[str, str]:
    """A plugin on one scheduler (its id: a new scheduler on the same port differs)."""
    info = client.scheduler_info()
    return (str(info.get("id") or client.scheduler.address), name)


class Scorer:
    """An entry script, held on a cluster's workers, applied to Dask collections.

    Built by :func:`scorer` (a context manager) or, for one call, by
    :func:`map_partitions`. Calling it (``score(collection, meta=None)``) is
    :func:`map_partitions` with its settings.
    """

    def __init__(
        self,
        parallel_run_config: ParallelRunConfig,
        *,
        arguments: Sequence[Any] = (),
        models: Sequence[Any] = (),
        client: Any = None,
    ) -> None:
        if not isinstance(parallel_run_config, ParallelRunConfig):
            raise ConfigError(
                "parallel_run_config",
                parallel_run_config,
                "a daskscore.ParallelRunConfig",
            )
        cfg = self.config = parallel_run_config
        self.client = client
        self.bundle = bundle_entry_script(cfg.entry_script, cfg.source_directory)
        self.script_display = os.path.join(
            cfg.source_directory or "", cfg.entry_script
        )
        self.label = os.path.basename(cfg.entry_script)
        self.job = self._job_spec([str(a) for a in arguments], list(models))
        self.name = self._plugin_name(list(models))

    def _job_spec(self, arguments: list[str], models: list[Any]) -> JobSpec:
        cfg = self.config
        source = cfg.source_directory or os.path.dirname(
            os.path.abspath(cfg.entry_script)
        )
        return JobSpec(
            bundle=self.bundle.zip_bytes,
            script_name=self.bundle.script_name,
            script_display=self.script_display,
            source_display=os.path.abspath(source),
            arguments=arguments,
            environment_variables=dict(cfg.environment_variables or {}),
            logging_level=cfg.logging_level,
            run_invocation_timeout=float(cfg.run_invocation_timeout),
            run_max_try=cfg.run_max_try,
            init_timeout=_settings.init_timeout(cfg.run_invocation_timeout),
            # no output folder: results go back to the tasks
            output_action="summary_only",
            output_format=cfg.output_format,
            output_url="",
            parts_url="",
            records_url="",
            log_dir="",
            log_url="",
            logs_local=False,
            script_output_dir="",
            script_output_url="",
            runner_env=models_env(models),
            model_options=model_options(models),
            runner_read_timeout=_settings.get("runner.read-timeout"),
            runner_shutdown_timeout=_settings.get("runner.shutdown-timeout"),
            runner_init_failures=_settings.get("runner.init-failures"),
            return_result=True,
        )

    def _plugin_name(self, models: list[Any]) -> str:
        job = self.job
        blob = json.dumps(
            [
                self.bundle.digest,
                job.arguments,
                job.environment_variables,
                job.logging_level,
                job.run_invocation_timeout,
                job.run_max_try,
                [public_model_entry(m) for m in models],
            ],
            sort_keys=True,
            default=str,
        )
        digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
        stem = re.sub(r"[^A-Za-z0-9_]+", "_", os.path.splitext(self.label)[0])
        return f"daskscore-{stem}-{digest}"

    # -- the plugin on the cluster ---------------------------------------------------
    def register(self) -> Any:
        """Register the plugin on the cluster (once); return the client.

        Raises :class:`~daskscore.errors.EntryScriptError` when a worker cannot
        import the script.
        """
        client = _client_of(self.client)
        key = _key(client, self.name)
        if key in _REGISTERED:
            return client
        client.register_plugin(ScoringPlugin(self.name, self.job), name=self.name)
        _REGISTERED.add(key)
        problems = client.run(plugin_problem, self.name)
        for _worker, problem in sorted(problems.items()):
            if problem:
                self.release()
                raise EntryScriptError(self.script_display, problem[0], problem[1])
        return client

    def release(self) -> None:
        """Remove the plugin from the workers: each runner runs ``shutdown()``."""
        client = _client_of(self.client)
        key = _key(client, self.name)
        if key in _REGISTERED:
            _REGISTERED.discard(key)
            client.unregister_worker_plugin(self.name)

    def __enter__(self) -> Scorer:
        self.register()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- collections -------------------------------------------------------------------
    def __call__(self, collection: Any, meta: Any = None) -> Any:
        import dask.bag as db
        import dask.dataframe as dd

        if isinstance(collection, dd.DataFrame | dd.Series):
            return self._frame(collection, meta)
        if isinstance(collection, db.Bag):
            return self._bag(collection)
        raise ConfigError(
            "collection",
            type(collection).__name__,
            "a dask DataFrame (dask.dataframe) or a dask Bag (dask.bag)",
        )

    def _frame(self, ddf: Any, meta: Any) -> Any:
        import dask
        import dask.dataframe as dd

        client = self.register()
        if meta is None:
            meta = self._infer_meta(client, ddf)
        reads = partition_reads(ddf)
        if reads is not None:  # each runner reads its partitions itself
            # run()'s columns as they are, as map_partitions gives them (no
            # conversion of object columns to Arrow strings)
            with dask.config.set({"dataframe.convert-string": False}):
                return dd.from_map(
                    _score_read,
                    reads,
                    args=[self.name, meta],
                    meta=meta,
                    label=self.label,
                    enforce_metadata=True,
                )
        return ddf.map_partitions(
            _score_frame,
            self.name,
            meta,
            meta=meta,
            token=self.label,
            clear_divisions=True,
            align_dataframes=False,
        )

    def _infer_meta(self, client: Any, ddf: Any) -> Any:
        """Score a few rows of the first partition on a worker; keep no rows."""
        from dask import delayed

        head = ddf.partitions[0].head(META_ROWS, compute=False)
        meta = client.compute(
            delayed(_frame_meta, pure=False)(self.name, head)
        ).result()
        if meta is None:
            raise ConfigError(
                "meta",
                None,
                "the first partition is empty, so the output's columns cannot be "
                "inferred: give ds.map_partitions(..., meta=) a pandas DataFrame "
                "with the columns run() returns",
            )
        return meta

    def _bag(self, bag: Any) -> Any:
        import dask.bag as db
        from dask.base import tokenize
        from dask.highlevelgraph import HighLevelGraph

        self.register()
        name = f"{self.label}-{tokenize(bag.name, self.name)}"
        dsk = {
            (name, i): (_score_items, self.name, i, (bag.name, i))
            for i in range(bag.npartitions)
        }
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[bag])
        return db.Bag(graph, name, bag.npartitions)


def partition_reads(ddf: Any) -> list[PartitionRead] | None:
    """The partitions of ``ddf`` as reads a runner can do itself, or None.

    Only for a collection that is, as it stands, a ``dd.read_parquet`` or a
    dataset's ``to_dask_dataframe(mini_batch_size=)`` (after Dask's own
    optimization: small files fused, Arrow strings): each partition is then
    Dask's own task for it, which depends on nothing, so running it in the
    runner gives exactly the frame (rows, columns, dtypes, index) the worker
    would compute. Anything else (a filter, an assign, any other source) is
    computed by Dask and sent to the runner.
    """
    try:
        expr = ddf.expr.optimize()
        if not _reads_only(expr):
            return None
        name = expr._name
        tasks = [expr._task((name, i), i) for i in range(expr.npartitions)]
    except Exception:  # noqa: BLE001 - Dask's internals changed: send the frames
        return None
    if any(task.dependencies for task in tasks):
        return None
    pieces = [_plain_piece(task) for task in tasks]
    if all(pieces):  # read without Dask in the runner
        return [PartitionRead(name, i, piece=p) for i, p in enumerate(pieces)]
    return [PartitionRead(name, i, task) for i, task in enumerate(tasks)]


# what a plain piece's read may be asked, besides the schema (unused without
# filters) and Dask's defaults: anything else is left to Dask's own task
_PLAIN_KWARGS = {"partitions", "categories", "filters", "dataset",
                 "convert_string", "read", "dtype_backend", "schema"}


def _plain_piece(task: Any) -> DaskPiece | None:
    """The partition's read as a :class:`DaskPiece` when Dask's task is nothing
    but its Arrow engine reading row groups of one file (no filters, hive
    partitions, ``dtype_backend`` or other options); else None."""
    from dask.dataframe.io.parquet.arrow import ArrowDatasetEngine
    from dask.dataframe.io.parquet.core import ParquetFunctionWrapper

    func, args = task.func, task.args
    if type(func) is not ParquetFunctionWrapper:
        return None
    if func.engine is not ArrowDatasetEngine:
        return None
    if len(args) != 1 or task.kwargs or not isinstance(args[0], dict):
        return None
    if set(args[0]) != {"piece"} or func.dtype_backend is not None:
        return None
    path, row_groups, keys = args[0]["piece"]
    kw = func.common_kwargs
    if not isinstance(path, str) or keys or not set(kw) <= _PLAIN_KWARGS:
        return None
    dataset = dict(kw.get("dataset") or {})
    if dataset.pop("partitioning", "hive") != "hive" or set(dataset) - {"format"}:
        return None
    if kw.get("partitions") or kw.get("filters") or kw.get("dtype_backend"):
        return None
    if kw.get("read") not in (None, {}, {"open_file_options": {}}):
        return None
    if not isinstance(func.columns, list) or not isinstance(
        row_groups, list | tuple | None
    ):
        return None
    return DaskPiece(
        fs=func.fs,
        path=path,
        row_groups=None if row_groups is None else tuple(row_groups),
        columns=tuple(func.columns),
        index=func.index,
        categories=kw.get("categories"),
        convert_string=bool(kw.get("convert_string")),
        columns_name=func.meta.columns.name,
    )


def _reads_only(expr: Any) -> bool:
    """Whether ``expr`` only reads: Parquet through Dask, a dataset's
    mini-batches through the runner's reader, and Dask's string conversion."""
    from dask.dataframe.dask_expr._expr import ArrowStringConversion, Fused
    from dask.dataframe.dask_expr.io.io import FromMap, FusedIO
    from dask.dataframe.dask_expr.io.parquet import ReadParquet

    if isinstance(expr, Fused):
        return all(_reads_only(e) for e in expr.exprs)
    if isinstance(expr, FusedIO):
        return _reads_only(expr.operand("_expr"))
    if isinstance(expr, FromMap):
        return expr.operand("func") is _read_rows
    return isinstance(expr, ReadParquet | ArrowStringConversion)


def _as_frame(result: Any, partition: Any, meta: Any) -> Any:
    if result is None:  # an empty partition: run() was not called
        return meta.iloc[:0] if meta is not None else None
    frame = result_frame(result)
    if (
        partition is not None
        and not is_dataframe(result)
        and len(frame) == len(partition)
    ):
        frame.index = partition.index  # one row per input row
    return frame


def _score_frame(
    partition: Any, plugin_name: str, meta: Any, partition_info: Any = None
) -> Any:
    """One DataFrame partition through the scorer's runner (on a worker)."""
    index = partition_info["number"] if partition_info else 0
    result = score_partition(plugin_name, index, partition, "frame")
    return _as_frame(result, partition, meta)


def _score_read(read: PartitionRead, plugin_name: str, meta: Any) -> Any:
    """One ``dd.read_parquet`` partition, read and scored by the runner (on a
    worker); a list ``run()`` returned comes back indexed like the partition."""
    result = score_partition(plugin_name, read.index, read, "frame")
    return _as_frame(result, None, meta)


def _frame_meta(plugin_name: str, head: Any) -> Any:
    """The empty frame of what ``run()`` returns for ``head`` (on a worker)."""
    frame = _as_frame(score_partition(plugin_name, 0, head, "frame"), head, None)
    return None if frame is None else frame.iloc[:0]


def _score_items(plugin_name: str, index: int, items: Any) -> list:
    """One Bag partition, as a list, through the scorer's runner (on a worker)."""
    items = list(items)
    result = score_partition(plugin_name, index, items, "items")
    if result is None:
        return []
    if is_dataframe(result):
        return result.to_dict("records")
    return list(result)


def scorer(
    parallel_run_config: ParallelRunConfig,
    *,
    arguments: Sequence[Any] = (),
    models: Sequence[Any] = (),
    client: Any = None,
) -> Scorer:
    """An entry script held on the cluster; release it to run ``shutdown()``.

    ::

        with ds.scorer(cfg, arguments=["--model", "m.npz"]) as score:
            score(ddf).to_parquet("scores/")
        # here every runner has run shutdown()

    Use it as a context manager, or call ``.release()``; without either, the
    runners run ``shutdown()`` when their workers close.
    """
    return Scorer(
        parallel_run_config, arguments=arguments, models=models, client=client
    )


def map_partitions(
    collection: Any,
    parallel_run_config: ParallelRunConfig,
    *,
    arguments: Sequence[Any] = (),
    models: Sequence[Any] = (),
    meta: Any = None,
    client: Any = None,
) -> Any:
    """Apply an entry script's ``run()`` to every partition of a Dask collection.

    Parameters
    ----------
    collection
        A dask DataFrame (each partition is one pandas DataFrame for ``run()``)
        or a dask Bag (each partition is one list for ``run()``).
    parallel_run_config
        The entry-script settings are honoured (``entry_script``,
        ``source_directory``, ``environment_variables``, ``logging_level``,
        ``run_invocation_timeout``, ``run_max_try``); those of a step only
        (``output_action``, ``node_count``, ...) are ignored.
    arguments, models
        As for :class:`~daskscore.ParallelRunStep`.
    meta
        A DataFrame's output columns (as in ``dask.dataframe.map_partitions``);
        inferred when omitted by scoring a few rows on a worker.
    client
        The ``distributed.Client``; the current one when omitted.

    Returns
    -------
    A lazy dask DataFrame (for a DataFrame) or Bag (for a Bag). Computing it
    raises :class:`~daskscore.errors.MiniBatchError` for a partition whose
    tries all failed.
    """
    score = Scorer(
        parallel_run_config, arguments=arguments, models=models, client=client
    )
    return score(collection, meta=meta)
