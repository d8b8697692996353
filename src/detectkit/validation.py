"""Problems found in annotations, the :class:`ValidationReport` that lists them, and the
collector every reader uses to either raise on the first problem or keep going.

Readers take ``errors="raise" | "collect"``. With ``"raise"`` the first *error* becomes a
:class:`~detectkit.InvalidAnnotationError`; with ``"collect"`` the reader keeps every valid record
and returns a report listing every problem. *Warnings* (a value a hair over 1 that was clipped,
a zero-area box) never raise: the data is kept and the report says what was done to it.
"""

from __future__ import annotations

from collections import Counter
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from detectkit.errors import InvalidAnnotationError, format_problem

__all__ = ["ErrorMode", "Problem", "ProblemKind", "Severity", "ValidationReport"]

ErrorMode = Literal["raise", "collect"]


class Severity(str, Enum):
    """How bad a problem is: errors drop the record or object, warnings keep it."""

    ERROR = "error"
    WARNING = "warning"


class ProblemKind(str, Enum):
    """What kind of problem was found."""

    PARSE = "parse"  # the file is not valid JSON / XML / text
    MISSING_FIELD = "missing_field"
    BAD_VALUE = "bad_value"  # wrong type or a value that cannot be used
    OUT_OF_RANGE = "out_of_range"  # a coordinate outside the image
    CLIPPED = "clipped"  # a coordinate a hair outside [0, 1], clipped
    INVERTED_BOX = "inverted_box"
    EMPTY_BOX = "empty_box"  # zero width or height
    UNKNOWN_LABEL = "unknown_label"
    MISSING_IMAGE = "missing_image"
    UNREADABLE_IMAGE = "unreadable_image"
    SIZE_MISMATCH = "size_mismatch"  # stored size disagrees with the image file
    EXIF_SWAPPED = "exif_swapped"  # stored size is the un-rotated size of an EXIF-rotated photo
    DUPLICATE_ID = "duplicate_id"
    INVALID_ID = "invalid_id"  # e.g. a COCO id of 0
    DUPLICATE_IMAGE = "duplicate_image"
    UNSAFE_PATH = "unsafe_path"  # an image path escaping the dataset folder
    UNREFERENCED = "unreferenced"  # e.g. an annotation pointing at no image


class Problem(BaseModel):
    """One problem found in a data set.

    Attributes:
        kind: What kind of problem it is.
        severity: ``error`` (the record or object was not kept) or ``warning`` (kept).
        message: A sentence saying what is wrong.
        file: The file, if the problem came from one.
        location: Where in the file (``line 17``, ``annotations[3]``, ``object #2``).
        field: The field concerned.
        expected: What was expected.
        got: What was found.
        hint: The next step for the user.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ProblemKind
    severity: Severity = Severity.ERROR
    message: str
    file: str | None = None
    location: str | None = None
    field: str | None = None
    expected: str | None = None
    got: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        return format_problem(
            self.message, self.file, self.location, self.field, self.expected, self.got, self.hint
        )

    def to_error(self) -> InvalidAnnotationError:
        """The exception raised for this problem in ``errors="raise"`` mode."""
        return InvalidAnnotationError(
            self.message,
            file=self.file,
            location=self.location,
            field=self.field,
            expected=self.expected,
            got=self.got,
            hint=self.hint,
        )


class ValidationReport(BaseModel):
    """Every problem found while reading or validating a data set.

    Example:
        >>> report = ValidationReport()
        >>> report.ok
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """True when there is no *error* (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> tuple[Problem, ...]:
        """Problems whose record or object was not kept."""
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """Problems that were fixed or are only suspicious; the data was kept."""
        return tuple(p for p in self.problems if p.severity is Severity.WARNING)

    def __len__(self) -> int:
        return len(self.problems)

    def __bool__(self) -> bool:
        return True

    def counts(self) -> dict[str, int]:
        """Number of problems per kind."""
        return dict(Counter(p.kind.value for p in self.problems))

    def merge(self, other: ValidationReport) -> ValidationReport:
        """A report holding the problems of both."""
        return ValidationReport(problems=self.problems + other.problems)

    def raise_for_errors(self) -> None:
        """Raise :class:`~detectkit.InvalidAnnotationError` for the first error, if any."""
        errs = self.errors
        if errs:
            raise errs[0].to_error()

    def to_text(self, limit: int | None = 50) -> str:
        """A readable multi-line rendering (the first ``limit`` problems)."""
        if not self.problems:
            return "No problems found."
        lines = [
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s): "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.counts().items()))
        ]
        shown = self.problems if limit is None else self.problems[:limit]
        for p in shown:
            lines.append(f"  [{p.severity.value}] {p}")
        if limit is not None and len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


class ProblemCollector:
    """Gathers problems for a reader; raises at the first error in ``raise`` mode."""

    def __init__(self, errors: ErrorMode = "raise", *, file: str | None = None) -> None:
        if errors not in ("raise", "collect"):
            raise ValueError(f'errors: expected "raise" or "collect", got {errors!r}')
        self.mode: ErrorMode = errors
        self.file = file
        self.problems: list[Problem] = []

    def add(
        self,
        kind: ProblemKind,
        message: str,
        *,
        severity: Severity = Severity.ERROR,
        file: str | None = None,
        location: str | None = None,
        field: str | None = None,
        expected: str | None = None,
        got: object = None,
        hint: str | None = None,
    ) -> None:
        """Record a problem; in ``raise`` mode an error is raised at once."""
        problem = Problem(
            kind=kind,
            severity=severity,
            message=message,
            file=file if file is not None else self.file,
            location=location,
            field=field,
            expected=expected,
            got=None if got is None else _short(got),
            hint=hint,
        )
        if self.mode == "raise" and severity is Severity.ERROR:
            raise problem.to_error()
        self.problems.append(problem)

    def report(self) -> ValidationReport:
        """The report of everything recorded so far."""
        return ValidationReport(problems=tuple(self.problems))


def _short(value: object, limit: int = 80) -> str:
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # nested past the limit, an int over 4,300 digits
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
