"""Azure ML v2 job YAML files run by daskscore: ``daskscore run pipeline.yml``.

- :mod:`.spec`: load and check a ``type: pipeline | parallel | command`` file and
  its ``component: ./x.yml`` files (errors name the key and the file);
- :mod:`.bindings`: ``${{inputs.x}}``, ``${{parent.jobs.J.outputs.Y}}``, ... resolved
  before anything runs, the jobs' dependency order, cycles refused;
- :mod:`.paths`: local, ``azureml://datastores/...``, ``azureml:<name>:<version>``
  and blob URLs to what daskscore reads;
- :mod:`.mltable`: daskscore's own ``MLTable`` reader; :mod:`.mltable_module` the
  ``mltable`` module scripts import when the real package is not installed;
- :mod:`.command`, :mod:`.parallel`: one ``command`` / ``parallel`` job;
- :mod:`.pipeline`: the jobs in dependency order, recorded in the run history.

This package imports nothing at import time, so that ``mltable_module`` is cheap
in a runner process.
"""
