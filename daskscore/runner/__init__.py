"""The runner: a child process of each Dask worker that holds the user's script.

Why a child process: a Python thread cannot be stopped, and a script may hang,
leak or crash (``os._exit``, a segfault in a native library). Running the script
in a child lets the worker kill it on ``run_invocation_timeout`` or notice its
death, restart it (which re-runs ``init()``), and go on with the next try, while
the Dask worker itself stays healthy and keeps its other work.

- :mod:`.__main__`: ``python -m daskscore.runner FD PARENT_PID``, how
  :class:`daskscore.worker.handle.RunnerHandle` starts it;
- :mod:`.process`: the process's main loop and :class:`~.process.Runner`;
- :mod:`.reader`: reading mini-batches (formats in :mod:`daskscore.io`);
- :mod:`.tracebacks`: the user's errors with their own file and line.

Importing this package loads nothing: the runner process imports only what a
job needs (never the registry, the pipelines, the client-side engine, the step,
``distributed`` or, until a mini-batch needs it, pandas).
"""
