"""A step's output folder: the commit store, parts, the collected file, reports.

- :mod:`.store`: atomic writes, the manifest and the per-mini-batch records;
- :mod:`.parts`: what ``run()`` returned, appended to its runner's segment file
  (on blob storage a blob per mini-batch id);
- :mod:`.assemble`: the collected file, streamed from the parts in input order;
- :mod:`.reports`: the ``logs/`` folder a user reads;
- :mod:`.lock`: one job at a time writes into an output folder.
"""
