"""Labeling projects: draw boxes in a local page, export a data asset.

``project.labeling`` is a :class:`Labeling`; each project a live :class:`LabelingProject`
(``serve()`` starts the page on 127.0.0.1 with an access token).
"""

from __future__ import annotations

from detectkit.labeling.project import Labeling, LabelingProject
from detectkit.labeling.records import ImageState, LabelingProgress
from detectkit.labeling.server import LabelingServer
from detectkit.labeling.store import LabelingStore, StaleRevisionError

__all__ = [
    "ImageState",
    "Labeling",
    "LabelingProgress",
    "LabelingProject",
    "LabelingServer",
    "LabelingStore",
    "StaleRevisionError",
]
