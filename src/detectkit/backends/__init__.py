"""Backends: where a :class:`~detectkit.Project` does its work (Azure ML, or this machine).

Each implements the :class:`~detectkit.backends.base.Backend` protocol; only backends import
azure-ai-ml, MLflow, torch or FastAPI.
"""
