"""The Azure Machine Learning backend: ``Project.azure(...)`` works through this class."""

from __future__ import annotations

from detectkit.backends.azure.backend import (
    AzureBackend,
    translate_error,
)

__all__ = [
    "AzureBackend",
    "translate_error",
]
