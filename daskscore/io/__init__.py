"""Inputs, one module per format: how each plans its mini-batches and reads them.

- :mod:`.files`: a FileDataset's files, ``mini_batch_size`` files at a time;
- :mod:`.text`: CSV and JSON lines, by byte ranges cut at line ends;
- :mod:`.parquet`: Parquet, by row groups (a big one sliced by rows);
- :mod:`.partitions`: the rows of each ``partition_keys`` combination;
- :mod:`.frame`: the partitions of a dask DataFrame.

Planning runs on the client (``Dataset.plan``); reading runs in the runner
process (``daskscore.runner.reader``). Both sides describe a mini-batch with
:class:`daskscore._protocol.MiniBatchSpec`.
"""
