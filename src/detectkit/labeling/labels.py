"""One image's labels as the store saves them and the page sends them.

:class:`ImageEntry` is a line of the index, :class:`ImageLabels` a label file; :func:`parse_boxes`
reads the page's box list (normalized corners of the displayed, EXIF-rotated image).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from detectkit.boxes import Box
from detectkit.dataset import ObjectAnnotation
from detectkit.errors import InvalidInputError
from detectkit.labeling.records import ImageState

__all__ = [
    "ImageEntry",
    "ImageLabels",
    "annotation",
    "box_json",
    "image_id",
    "is_draft",
    "is_image_id",
    "model_version_of",
    "parse_boxes",
    "parse_state",
    "positive_size",
]

_ID_CHARS = frozenset("0123456789abcdef")
#: Whether ObjectAnnotation carries ``source`` and ``model_version`` (it does from this release).
_PROVENANCE = "source" in ObjectAnnotation.model_fields


class ImageEntry(NamedTuple):
    """One image of the index.

    Attributes:
        id: Opaque id (hex).
        path: Path inside the image source's folder (POSIX separators, never absolute).
        name: File name shown in the page.
        width: Displayed width in pixels, when known.
        height: Displayed height in pixels, when known.
        ref: The original reference: the user's file path or the image URL.
    """

    id: str
    path: str
    name: str
    width: int | None = None
    height: int | None = None
    ref: str | None = None


class ImageLabels(BaseModel):
    """The saved state of one image.

    Attributes:
        id: The image id.
        state: Unlabeled, labeled, skipped or reviewed.
        revision: Number of saves so far (0: never saved).
        objects: The boxes, normalized to the displayed image.
        width: Displayed width in pixels, when known.
        height: Displayed height in pixels, when known.
        updated: When it was last saved (UTC, ISO 8601), if ever.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    state: ImageState = ImageState.UNLABELED
    revision: int = 0
    objects: tuple[ObjectAnnotation, ...] = ()
    width: int | None = None
    height: int | None = None
    updated: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The label file's content (also what the page receives)."""
        out: dict[str, Any] = {
            "id": self.id,
            "state": self.state.value,
            "revision": self.revision,
            "updated": self.updated,
            "width": self.width,
            "height": self.height,
            "boxes": [box_json(o) for o in self.objects],
        }
        return out

    @classmethod
    def from_json(cls, data: Any, *, where: str) -> ImageLabels:
        """Parse a label file's content (or a line of a labels snapshot).

        Raises:
            InvalidInputError: A field is missing or of the wrong kind.
        """
        if not isinstance(data, dict):
            raise InvalidInputError(f"{where}: expected a JSON object, got {type(data).__name__}")
        image = data.get("id")
        revision = data.get("revision", 0)
        if not isinstance(image, str) or not isinstance(revision, int) or revision < 0:
            raise InvalidInputError(
                f"{where}: expected an 'id' string and a 'revision' >= 0, got "
                f"id={image!r} revision={revision!r}"
            )
        return cls(
            id=image,
            state=parse_state(data.get("state", "unlabeled"), where=f"{where}: state"),
            revision=revision,
            objects=parse_boxes(data.get("boxes", []), where=f"{where}: boxes"),
            width=positive_size(data.get("width")),
            height=positive_size(data.get("height")),
            updated=data.get("updated") if isinstance(data.get("updated"), str) else None,
        )


def parse_state(value: object, *, where: str) -> ImageState:
    """An :class:`ImageState` from its name (``InvalidInputError`` otherwise)."""
    if isinstance(value, ImageState):
        return value
    try:
        return ImageState(value)
    except ValueError:
        raise InvalidInputError(
            f"{where}: expected one of {[s.value for s in ImageState]}, got {value!r}"
        ) from None


def parse_boxes(raw: object, *, where: str = "boxes") -> tuple[ObjectAnnotation, ...]:
    """Boxes as the page and the label files write them (``label``, ``top_x`` ...
    normalized, optional ``is_crowd`` and ``score``).

    Raises:
        InvalidInputError: Naming the box and the field that is wrong.
    """
    if not isinstance(raw, list):
        raise InvalidInputError(f"{where}: expected a list of boxes, got {type(raw).__name__}")
    out = []
    for k, item in enumerate(raw):
        at = f"{where}[{k}]"
        if not isinstance(item, dict):
            raise InvalidInputError(f"{at}: expected an object, got {type(item).__name__}")
        label = item.get("label")
        if not isinstance(label, str) or not label:
            raise InvalidInputError(f"{at}.label: expected a class name, got {label!r}")
        coords = []
        for field in ("top_x", "top_y", "bottom_x", "bottom_y"):
            value = item.get(field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInputError(f"{at}.{field}: expected a number, got {value!r}")
            coords.append(float(value))
        try:
            box = Box(top_x=coords[0], top_y=coords[1], bottom_x=coords[2], bottom_y=coords[3])
        except ValueError as exc:
            detail = str(exc).splitlines()[-1].strip() if str(exc) else "invalid box"
            raise InvalidInputError(f"{at}: {detail}") from None
        score = item.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
            raise InvalidInputError(f"{at}.score: expected a number or null, got {score!r}")
        source = item.get("source", "human")
        if source not in ("human", "model"):
            raise InvalidInputError(f"{at}.source: expected 'human' or 'model', got {source!r}")
        version = item.get("model_version")
        if version is not None and not isinstance(version, str):
            raise InvalidInputError(f"{at}.model_version: expected a string, got {version!r}")
        out.append(
            annotation(
                label,
                box,
                is_crowd=bool(item.get("is_crowd", False)),
                score=None if score is None else float(score),
                source=source,
                model_version=version,
            )
        )
    return tuple(out)


def annotation(
    label: str,
    box: Box,
    *,
    is_crowd: bool = False,
    score: float | None = None,
    source: str = "human",
    model_version: str | None = None,
) -> ObjectAnnotation:
    """An :class:`~detectkit.ObjectAnnotation` with its provenance (``source``, ``model_version``)."""
    kind: Any = ObjectAnnotation if _PROVENANCE else _WithProvenance
    made: ObjectAnnotation = kind(
        label=label,
        box=box,
        is_crowd=is_crowd,
        score=score,
        source=source,
        model_version=model_version,
    )
    return made


class _WithProvenance(ObjectAnnotation):
    """Provenance for an ObjectAnnotation that does not carry it itself (older releases)."""

    source: Literal["human", "model"] = "human"
    model_version: str | None = None


def is_draft(obj: ObjectAnnotation) -> bool:
    """True for a pre-label a model made (``source == "model"``) that no person has accepted."""
    return getattr(obj, "source", "human") == "model"


def model_version_of(obj: ObjectAnnotation) -> str | None:
    """The model version a draft came from, when recorded."""
    value = getattr(obj, "model_version", None)
    return value if isinstance(value, str) else None


def box_json(obj: ObjectAnnotation) -> dict[str, Any]:
    """A box as the label files and the page write it (``source`` and ``model_version`` only
    for drafts)."""
    out: dict[str, Any] = {
        "label": obj.label,
        "top_x": obj.box.top_x,
        "top_y": obj.box.top_y,
        "bottom_x": obj.box.bottom_x,
        "bottom_y": obj.box.bottom_y,
    }
    if obj.is_crowd:
        out["is_crowd"] = True
    if obj.score is not None:
        out["score"] = obj.score
    if is_draft(obj):
        out["source"] = "model"
        version = model_version_of(obj)
        if version is not None:
            out["model_version"] = version
    return out


def positive_size(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def image_id(path: str, taken: Iterable[str] = ()) -> str:
    """The opaque id of an image path: 12 hex digits of a hash, longer on a clash."""
    used = set(taken)
    salt = 0
    while True:
        digest = hashlib.blake2b(f"{path}#{salt}".encode(), digest_size=6).hexdigest()
        if digest not in used:
            return digest
        salt += 1


def is_image_id(value: str) -> bool:
    """True when ``value`` looks like an image id (hex, 12 to 40 characters)."""
    return 12 <= len(value) <= 40 and set(value) <= _ID_CHARS
