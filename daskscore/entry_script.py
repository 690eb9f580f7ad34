"""The user's entry script: checking it, shipping it, and the EntryScript helper.

``check_entry_script`` runs on the client before anything starts: it compiles the
script and looks for top-level ``init`` and ``run`` without executing the module
(so ``init()`` never runs there). The real import happens in every worker's runner
process, where an import error is reported back as :class:`EntryScriptError`.
"""

from __future__ import annotations

import ast
import hashlib
import io
import logging
import os
import sys
import zipfile
from dataclasses import dataclass, field
from typing import Any

from .errors import EntryScriptError

__all__ = ["EntryScript", "MiniBatchContext", "PartitionDataset", "ScriptBundle",
           "check_entry_script"]

_SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".ipynb_checkpoints", ".venv"}
_MAX_BUNDLE_BYTES = 512 * 1024 * 1024

# Set in the runner process before the script is imported; empty elsewhere.
_CONTEXT: dict[str, Any] = {}
# model path -> storage options, set by the runner from its setup message (kept
# out of DASKSCORE_MODELS so that no credential is in the environment)
STEP_MODEL_OPTIONS: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class ScriptBundle:
    """The entry script and its source directory, as bytes ready to ship."""

    script_name: str  # path of the script inside the bundle
    zip_bytes: bytes
    digest: str  # sha256 of the script and every file shipped with it


def _script_path(entry_script: str, source_directory: str | None) -> tuple[str, str]:
    """Return (absolute script path, absolute root folder to ship).

    ``entry_script`` may use Windows separators (``aml_prs\\model_train.py``).
    """
    if os.sep == "/":
        entry_script = entry_script.replace("\\", "/")
    if source_directory:
        root = os.path.abspath(os.path.expanduser(source_directory))
        if not os.path.isdir(root):
            raise EntryScriptError(
                entry_script,
                f"source_directory {source_directory!r} is not a folder "
                f"(looked in {root})",
            )
        script = os.path.join(root, entry_script)
    else:
        script = os.path.abspath(os.path.expanduser(entry_script))
        root = os.path.dirname(script)
    return script, root


def check_entry_script(entry_script: str, source_directory: str | None = None) -> str:
    """Check that the script exists, compiles and defines ``init`` and ``run``.

    The module is not executed. Returns the script's absolute path.

    Raises
    ------
    EntryScriptError
        Naming the script and the problem (with the line for syntax errors).
    """
    script, _ = _script_path(entry_script, source_directory)
    if not os.path.isfile(script):
        where = f" in source_directory {source_directory!r}" if source_directory else ""
        raise EntryScriptError(
            entry_script, f"file not found{where} (looked for {script})"
        )
    with open(script, "rb") as f:
        source = f.read()
    try:
        tree = ast.parse(source, filename=script)
    except SyntaxError as exc:
        raise EntryScriptError(
            script,
            f"syntax error at line {exc.lineno}: {exc.msg}",
            details=f"{exc.text or ''}".rstrip(),
        ) from None
    defined = _top_level_names(tree)
    missing = [name for name in ("init", "run") if name not in defined]
    if missing and "*" not in defined:
        raise EntryScriptError(
            script,
            f"defines no {' and no '.join(f'{m}()' for m in missing)}; an entry "
            "script needs init() (load the model) and run(mini_batch) (score it)",
        )
    return script


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        names.add(n.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.If | ast.Try):
            # definitions under `if`/`try` count: we cannot know which branch runs
            sub = ast.Module(body=list(ast.iter_child_nodes(node)), type_ignores=[])
            sub.body = [n for n in sub.body if isinstance(n, ast.stmt)]
            for handler in getattr(node, "handlers", []):
                sub.body.extend(handler.body)
            names |= _top_level_names(sub)
    return names


def bundle_entry_script(
    entry_script: str, source_directory: str | None
) -> ScriptBundle:
    """Zip the script (and its source_directory) so workers can run it anywhere."""
    script = check_entry_script(entry_script, source_directory)
    _, root = _script_path(entry_script, source_directory)
    buf = io.BytesIO()
    digest = hashlib.sha256()
    total = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        if source_directory:
            for folder, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
                for name in sorted(files):
                    if name.endswith((".pyc", ".pyo")):
                        continue
                    full = os.path.join(folder, name)
                    rel = os.path.relpath(full, root)
                    with open(full, "rb") as f:
                        data = f.read()
                    total += len(data)
                    if total > _MAX_BUNDLE_BYTES:
                        raise EntryScriptError(
                            script,
                            f"source_directory {root} holds more than "
                            f"{_MAX_BUNDLE_BYTES // 2**20} MB; keep data and models "
                            "out of it (register models, read data as inputs)",
                        )
                    digest.update(rel.encode() + b"\0" + data)
                    zf.writestr(rel, data)
            name = os.path.relpath(script, root)
        else:
            name = os.path.basename(script)
            with open(script, "rb") as f:
                data = f.read()
            digest.update(name.encode() + b"\0" + data)
            zf.writestr(name, data)
    return ScriptBundle(
        script_name=name, zip_bytes=buf.getvalue(), digest=digest.hexdigest()
    )


class PartitionDataset:
    """``mini_batch_context.dataset`` of a ``partition_keys`` mini-batch: a
    tabular dataset holding just that partition's rows (as the reference
    system's context gives one), already read."""

    input_kind = "tabular"

    def __init__(self, frame: Any, partition_key_value: dict[str, Any]) -> None:
        self._frame = frame
        self.partition_keys = list(partition_key_value)
        self.partition_key_value = dict(partition_key_value)

    def to_pandas_dataframe(self) -> Any:
        return self._frame.copy()

    def take(self, count: int) -> PartitionDataset:
        return PartitionDataset(self._frame.head(count).reset_index(drop=True),
                                self.partition_key_value)

    def __len__(self) -> int:
        return len(self._frame)

    def __repr__(self) -> str:
        return (f"PartitionDataset({self.partition_key_value!r}, "
                f"rows={len(self._frame)})")


@dataclass
class MiniBatchContext:
    """Passed as ``run(mini_batch, mini_batch_context)`` to scripts that take it.

    ``partition_key_value``: the key values of a ``partition_keys`` mini-batch, in
    ``partition_keys`` order; ``dataset``: that partition as a dataset
    (:class:`PartitionDataset`); ``minibatch_index``: the mini-batch's number.
    """

    minibatch_index: int
    partition_key_value: dict[str, Any] = field(default_factory=dict)
    dataset: Any = None


class EntryScript:
    """What an entry script can ask about where it runs.

    Works on the cluster and outside one (local debugging): outside, the folders
    default to ``./daskscore-local/`` under the current directory and the logger
    writes to stderr.

    Attributes
    ----------
    logger
        A ``logging.Logger`` whose records go to ``logs/user/<agent>/entry_script.log``.
    output_dir
        Folder for files the script writes itself (``summary_only``).
    log_dir
        The job's ``logs`` folder.
    working_dir
        The runner process's working folder (worker-local scratch space).
    agent_name
        Name of the worker process running the script.
    arguments
        The step's ``arguments`` (also ``sys.argv[1:]`` during ``init()``/``run()``).
    inputs
        Named inputs (``dataset.as_named_input(name)``) by name.
    """

    def __init__(self) -> None:
        ctx = _CONTEXT
        local_root = os.path.join(os.getcwd(), "daskscore-local")
        self.output_dir: str = ctx.get("output_dir") or os.path.join(
            local_root, "outputs"
        )
        self.log_dir: str = ctx.get("log_dir") or os.path.join(local_root, "logs")
        self.working_dir: str = ctx.get("working_dir") or os.getcwd()
        self.agent_name: str = ctx.get("agent_name") or "local"
        self.arguments: list[str] = list(ctx.get("arguments", sys.argv[1:]))
        self.inputs: dict[str, Any] = dict(ctx.get("inputs", {}))
        self.logger: logging.Logger = logging.getLogger("daskscore.entry_script")
        if not ctx and not self.logger.handlers:
            self.logger.addHandler(logging.StreamHandler())
            self.logger.setLevel(logging.INFO)
        if not ctx:
            os.makedirs(self.output_dir, exist_ok=True)

    def __repr__(self) -> str:
        return (
            f"EntryScript(agent_name={self.agent_name!r}, "
            f"output_dir={self.output_dir!r})"
        )
