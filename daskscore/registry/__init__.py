"""Workspaces and what they register: datastores, models and datasets.

- :mod:`.workspace`: :class:`~.workspace.Workspace`, a folder of JSON registries;
- :mod:`.datastore`: :class:`~.datastore.Datastore` and :class:`DataPath`;
- :mod:`.model`: :class:`~.model.Model`, versioned model files;
- :mod:`.datasets`: datasets registered by name and version;
- :mod:`._common`: names, timestamps, paths and the secret store they share.
"""
