"""The labeling project's records: the state of one image and the progress of a project.

Both are frozen pydantic models; :class:`ImageState` is the state an image moves through.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ImageState", "LabelingProgress"]


class ImageState(str, Enum):
    """Where an image stands in a labeling project.

    ``unlabeled`` (untouched) until someone draws on it or marks it done; ``prelabeled`` while
    it holds a model's drafts that no person has looked at; ``labeled`` once a person saved it
    (drew, accepted, edited or rejected a box; an image with no objects can be labeled too);
    ``skipped`` when set aside; ``reviewed`` once a person marked it reviewed (checked as a
    whole). Exports hold the labeled and reviewed images.
    """

    UNLABELED = "unlabeled"
    PRELABELED = "prelabeled"
    LABELED = "labeled"
    SKIPPED = "skipped"
    REVIEWED = "reviewed"

    @property
    def code(self) -> str:
        """One letter, as the page's image list carries it (``u``, ``p``, ``l``, ``s``,
        ``r``)."""
        return self.value[0]


class LabelingProgress(BaseModel):
    """How far a labeling project has come.

    Attributes:
        images: Images in the project.
        unlabeled: Untouched images: no person and no model has labeled them.
        labeled: Images labeled (not yet reviewed).
        skipped: Images set aside.
        reviewed: Images labeled and marked reviewed.
        boxes: Human boxes over every image (drafts not counted).
        boxes_per_class: Human boxes of each class, in the project's class order (every class
            is listed, with 0 when it has no box yet).
        prelabeled: Images holding a model's drafts that no person has looked at yet.
        drafts: Draft boxes (a model's pre-labels not accepted yet) over every image.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    images: int = Field(ge=0)
    unlabeled: int = Field(ge=0)
    labeled: int = Field(ge=0)
    skipped: int = Field(ge=0)
    reviewed: int = Field(ge=0)
    boxes: int = Field(ge=0)
    boxes_per_class: dict[str, int] = Field(default_factory=dict)
    prelabeled: int = Field(default=0, ge=0)
    drafts: int = Field(default=0, ge=0)

    @property
    def done(self) -> int:
        """Images a person has labeled or reviewed (those an export holds)."""
        return self.labeled + self.reviewed

    @property
    def fraction_done(self) -> float:
        """:attr:`done` over :attr:`images` (0.0 for an empty project)."""
        return self.done / self.images if self.images else 0.0

    def __repr__(self) -> str:
        return (
            f"LabelingProgress(images={self.images}, labeled={self.labeled}, "
            f"reviewed={self.reviewed}, prelabeled={self.prelabeled}, unlabeled={self.unlabeled}, "
            f"skipped={self.skipped}, boxes={self.boxes}, drafts={self.drafts})"
        )
