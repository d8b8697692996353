"""The detectkit error tree.

Every error detectkit raises derives from :class:`DetectkitError`, and is named for what the
caller can do about it::

    DetectkitError
    ├── InvalidInputError (ValueError)      fix the input and call again
    │   ├── InvalidAnnotationError          an annotation file or record is malformed
    │   ├── InvalidSettingsError            training / deployment settings are wrong
    │   └── InvalidResponseError            a scoring response does not follow the contract
    ├── NotFoundError (LookupError)         the named resource does not exist
    ├── AuthenticationError                 credentials are missing or refused
    ├── ConflictError                       the resource exists / is in the wrong state
    ├── QuotaError                          a quota or rate limit was reached
    ├── RunFailedError                      a training run ended in failure
    ├── EndpointError                       an endpoint answered with an error status
    ├── OperationTimeoutError (TimeoutError) waiting took longer than allowed
    └── MissingDependencyError (ImportError) an optional extra is not installed

Foreign exceptions (azure.core, MLflow, torch, HTTP clients) are translated into these at one
boundary in each backend, with ``raise ... from exc`` so the original stays visible.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "DetectkitError",
    "EndpointError",
    "InvalidAnnotationError",
    "InvalidInputError",
    "InvalidResponseError",
    "InvalidSettingsError",
    "MissingDependencyError",
    "NotFoundError",
    "OperationTimeoutError",
    "QuotaError",
    "RunFailedError",
]


class DetectkitError(Exception):
    """Base class of every error raised by detectkit."""


class InvalidInputError(DetectkitError, ValueError):
    """Input given to detectkit is invalid; the message says what and how to fix it."""


class InvalidAnnotationError(InvalidInputError):
    """An annotation file or record is malformed.

    Attributes:
        file: The file the problem was found in, if any.
        location: Where in the file: ``"line 17"``, ``"annotations[3]"``, ``"<object> #2"``.
        field: The field that is wrong, if one is.
        expected: What was expected.
        got: What was found.
        hint: The next step for the user.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        location: str | None = None,
        field: str | None = None,
        expected: str | None = None,
        got: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.location = location
        self.field = field
        self.expected = expected
        self.got = got
        self.hint = hint
        self.message = message
        super().__init__(format_problem(message, file, location, field, expected, got, hint))


class InvalidSettingsError(InvalidInputError):
    """Training or deployment settings are invalid (checked before anything is submitted)."""


class InvalidResponseError(InvalidInputError):
    """A scoring response or prediction file does not follow the documented contract."""


class NotFoundError(DetectkitError, LookupError):
    """A named resource (dataset, run, model, endpoint, file) does not exist."""


class AuthenticationError(DetectkitError):
    """Credentials are missing, expired or refused."""


class ConflictError(DetectkitError):
    """The resource already exists or is in a state that does not allow the operation."""


class QuotaError(DetectkitError):
    """A quota or rate limit was reached."""


class RunFailedError(DetectkitError):
    """A training run ended in failure; the message carries the run's own error."""


class EndpointError(DetectkitError):
    """An endpoint answered with an error status.

    Attributes:
        status_code: The HTTP status code of the answer.
        hint: What usually fixes it.
    """

    def __init__(self, message: str, *, status_code: int | None = None, hint: str | None = None):
        self.status_code = status_code
        self.hint = hint
        text = message if status_code is None else f"HTTP {status_code}: {message}"
        if hint:
            text = f"{text}\n  hint: {hint}"
        super().__init__(text)


class OperationTimeoutError(DetectkitError, TimeoutError):
    """Waiting for an operation took longer than the caller allowed."""


class MissingDependencyError(DetectkitError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def missing_dependency(package: str, extra: str) -> MissingDependencyError:
    """Build the error raised when ``package`` from the ``extra`` extra is not importable."""
    return MissingDependencyError(
        f"{package} is not installed; it is needed here. "
        f'Install it with: pip install "detectkit[{extra}]"'
    )


def format_problem(
    message: str,
    file: str | None,
    location: str | None,
    field: str | None,
    expected: str | None,
    got: str | None,
    hint: str | None,
) -> str:
    """Render a problem as one readable line plus an optional hint line."""
    where = ", ".join(part for part in (file, location) if part)
    head = f"{where}: " if where else ""
    text = head + (f"{field}: " if field else "") + message
    if expected is not None or got is not None:
        text += f" (expected {expected}, got {got})"
    if hint:
        text += f"\n  hint: {hint}"
    return text
