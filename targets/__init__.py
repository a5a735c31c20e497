"""Deployment backends (imported as ``qdeploy.targets``), one sub-package each, found via entry points."""
