"""Search-space distributions: what a sweep draws each training parameter from.

The ten distributions of Azure ML sweeps (:class:`Choice`, :class:`Uniform`,
:class:`LogUniform`, :class:`QUniform`, :class:`QLogUniform`, :class:`Normal`,
:class:`LogNormal`, :class:`QNormal`, :class:`QLogNormal`, :class:`Randint`) with Azure ML
semantics: each writes itself as azure-ai-ml does (``"uniform(0.0001,0.01)"``), is read back
by :func:`parse_distribution`, and samples itself with a numpy ``Generator`` (the local
backend's sweeps). :class:`~detectkit.settings.SearchSpace` puts them on training parameters;
all are re-exported by :mod:`detectkit.settings`.

Nothing here imports numpy at run time or azure-ai-ml at all.
"""

from __future__ import annotations

import math
import re
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from decimal import localcontext
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from detectkit.errors import InvalidSettingsError
from detectkit.settings.base import FROZEN, messages

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Choice",
    "Distribution",
    "LogNormal",
    "LogUniform",
    "Normal",
    "QLogNormal",
    "QLogUniform",
    "QNormal",
    "QUniform",
    "Randint",
    "Uniform",
    "parse_distribution",
]

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
Number = StrictInt | StrictFloat


def wire_number(value: object) -> str:
    """A number as azure-ai-ml writes it: floats without exponent (``1e-05`` -> ``0.00001``)."""
    if isinstance(value, float):
        with localcontext() as ctx:
            ctx.prec = 20
            return format(ctx.create_decimal(repr(value)), "f")
    return str(value)


def _wire_args(kind: str, *args: object) -> str:
    return f"{kind}({','.join(wire_number(a) for a in args)})"


class BaseDistribution(BaseModel):
    """Base of the search-space distributions (Azure ML sweep semantics)."""

    model_config = FROZEN

    @abstractmethod
    def to_azure_string(self) -> str:
        """The distribution as azure-ai-ml writes it in a search space (``"uniform(0.1,0.2)"``)."""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Scalar:
        """One value drawn with ``rng`` (Azure ML semantics), as a Python scalar."""

    def grid_values(self) -> tuple[Scalar, ...]:
        """The values a grid sweep visits; only :class:`Choice` has them.

        Raises:
            InvalidSettingsError: The distribution is continuous or unbounded.
        """
        raise InvalidSettingsError(
            f"{self.to_azure_string()}: grid sampling visits a finite set of values; "
            "use Choice([...]) or sampling_algorithm='random'"
        )

    def _extremes(self) -> tuple[Scalar, ...]:
        """The smallest and largest value it can produce (empty when unbounded)."""
        return ()

    def __str__(self) -> str:
        return self.to_azure_string()

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return [(k, v) for k, v in self if k != "type"]


class Choice(BaseDistribution):
    """Pick one of ``values`` (``choice('yolov5','fasterrcnn_resnet50_fpn')``)."""

    type: Literal["choice"] = "choice"
    values: tuple[Scalar, ...] = Field(min_length=1)

    def __init__(self, values: Iterable[Scalar] | Scalar, **data: Any) -> None:
        super().__init__(values=values, **data)

    @field_validator("values", mode="before")
    @classmethod
    def _one_value(cls, value: object) -> object:
        if isinstance(value, str | int | float | bool):
            return (value,)
        if isinstance(value, Iterable) and not isinstance(value, Mapping):
            return tuple(value)
        return value

    @field_validator("values")
    @classmethod
    def _wire_safe(cls, values: tuple[Scalar, ...]) -> tuple[Scalar, ...]:
        for value in values:
            if isinstance(value, str) and (not value or re.search(r"[\s,()'\"]", value)):
                raise ValueError(
                    f"choice value {value!r} cannot be sent: it is empty or has a space, "
                    "comma, parenthesis or quote"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"choice value {value!r} is not a finite number")
        return values

    def to_azure_string(self) -> str:
        parts = [f"'{v}'" if isinstance(v, str) else wire_number(v) for v in self.values]
        return f"choice({','.join(parts)})"

    def sample(self, rng: np.random.Generator) -> Scalar:
        return self.values[int(rng.integers(len(self.values)))]

    def grid_values(self) -> tuple[Scalar, ...]:
        return self.values

    def _extremes(self) -> tuple[Scalar, ...]:
        return self.values


class _Range(BaseDistribution):
    min_value: Number
    max_value: Number

    def __init__(self, min_value: float, max_value: float, **data: Any) -> None:
        super().__init__(min_value=min_value, max_value=max_value, **data)

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if not (math.isfinite(self.min_value) and math.isfinite(self.max_value)):
            raise ValueError(f"{self.to_azure_string()}: bounds must be finite numbers")
        if self.min_value >= self.max_value:
            raise ValueError(
                f"{self.to_azure_string()}: min_value must be < max_value "
                f"(got {self.min_value} >= {self.max_value})"
            )
        return self


class Uniform(_Range):
    """A float drawn uniformly in ``[min_value, max_value]``."""

    type: Literal["uniform"] = "uniform"

    def to_azure_string(self) -> str:
        return _wire_args("uniform", self.min_value, self.max_value)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return float(rng.uniform(self.min_value, self.max_value))

    def _extremes(self) -> tuple[Scalar, ...]:
        return (float(self.min_value), float(self.max_value))


class LogUniform(_Range):
    """``exp(uniform(min_value, max_value))``: bounds are natural logs, as in Azure ML.

    ``LogUniform(math.log(1e-4), math.log(1e-2))`` draws learning rates between 1e-4 and 1e-2.
    """

    type: Literal["loguniform"] = "loguniform"

    def to_azure_string(self) -> str:
        return _wire_args("loguniform", self.min_value, self.max_value)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return math.exp(float(rng.uniform(self.min_value, self.max_value)))

    def _extremes(self) -> tuple[Scalar, ...]:
        return (math.exp(self.min_value), math.exp(self.max_value))


def _quantize(value: float, q: int) -> int:
    return round(value / q) * q


class _QRange(_Range):
    q: StrictInt = Field(ge=1)

    def __init__(self, min_value: float, max_value: float, q: int, **data: Any) -> None:
        super().__init__(min_value, max_value, q=q, **data)


class QUniform(_QRange):
    """``round(uniform(min_value, max_value) / q) * q``: integers when ``q`` is an integer."""

    type: Literal["quniform"] = "quniform"

    def to_azure_string(self) -> str:
        return _wire_args("quniform", self.min_value, self.max_value, self.q)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return _quantize(float(rng.uniform(self.min_value, self.max_value)), self.q)

    def _extremes(self) -> tuple[Scalar, ...]:
        return (_quantize(self.min_value, self.q), _quantize(self.max_value, self.q))


class QLogUniform(_QRange):
    """``round(exp(uniform(min_value, max_value)) / q) * q``."""

    type: Literal["qloguniform"] = "qloguniform"

    def to_azure_string(self) -> str:
        return _wire_args("qloguniform", self.min_value, self.max_value, self.q)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return _quantize(math.exp(float(rng.uniform(self.min_value, self.max_value))), self.q)

    def _extremes(self) -> tuple[Scalar, ...]:
        low, high = math.exp(self.min_value), math.exp(self.max_value)
        return (_quantize(low, self.q), _quantize(high, self.q))


class _Gaussian(BaseDistribution):
    mu: Number
    sigma: Number = Field(gt=0)

    def __init__(self, mu: float, sigma: float, **data: Any) -> None:
        super().__init__(mu=mu, sigma=sigma, **data)


class Normal(_Gaussian):
    """A float drawn from a normal distribution (unbounded: not range-checked)."""

    type: Literal["normal"] = "normal"

    def to_azure_string(self) -> str:
        return _wire_args("normal", self.mu, self.sigma)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return float(rng.normal(self.mu, self.sigma))


class LogNormal(_Gaussian):
    """``exp(normal(mu, sigma))``: always positive."""

    type: Literal["lognormal"] = "lognormal"

    def to_azure_string(self) -> str:
        return _wire_args("lognormal", self.mu, self.sigma)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return math.exp(float(rng.normal(self.mu, self.sigma)))


class _QGaussian(_Gaussian):
    q: StrictInt = Field(ge=1)

    def __init__(self, mu: float, sigma: float, q: int, **data: Any) -> None:
        super().__init__(mu, sigma, q=q, **data)


class QNormal(_QGaussian):
    """``round(normal(mu, sigma) / q) * q``."""

    type: Literal["qnormal"] = "qnormal"

    def to_azure_string(self) -> str:
        return _wire_args("qnormal", self.mu, self.sigma, self.q)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return _quantize(float(rng.normal(self.mu, self.sigma)), self.q)


class QLogNormal(_QGaussian):
    """``round(exp(normal(mu, sigma)) / q) * q``."""

    type: Literal["qlognormal"] = "qlognormal"

    def to_azure_string(self) -> str:
        return _wire_args("qlognormal", self.mu, self.sigma, self.q)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return _quantize(math.exp(float(rng.normal(self.mu, self.sigma))), self.q)


class Randint(BaseDistribution):
    """An integer in ``[0, upper)``."""

    type: Literal["randint"] = "randint"
    upper: StrictInt = Field(ge=1)

    def __init__(self, upper: int, **data: Any) -> None:
        super().__init__(upper=upper, **data)

    def to_azure_string(self) -> str:
        return _wire_args("randint", self.upper)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return int(rng.integers(self.upper))

    def _extremes(self) -> tuple[Scalar, ...]:
        return (0, self.upper - 1)


#: Any search-space distribution; dicts are parsed by their ``type`` key.
Distribution = Annotated[
    Choice
    | Uniform
    | LogUniform
    | QUniform
    | QLogUniform
    | Normal
    | LogNormal
    | QNormal
    | QLogNormal
    | Randint,
    Field(discriminator="type"),
]

DISTRIBUTION_TYPES: dict[str, type[BaseDistribution]] = {
    "choice": Choice,
    "uniform": Uniform,
    "loguniform": LogUniform,
    "quniform": QUniform,
    "qloguniform": QLogUniform,
    "normal": Normal,
    "lognormal": LogNormal,
    "qnormal": QNormal,
    "qlognormal": QLogNormal,
    "randint": Randint,
}
DISTRIBUTION_ADAPTER: TypeAdapter[BaseDistribution] = TypeAdapter(Distribution)
DISTRIBUTION_TEXT = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$", re.IGNORECASE | re.DOTALL)


def _parse_scalar(text: str) -> Scalar:
    text = text.strip()
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text in ("True", "False"):
        return text == "True"
    return text.strip("'\"")


def parse_distribution(text: str) -> BaseDistribution:
    """Parse the string form of a distribution (``"uniform(0.0001, 0.01)"``).

    This is the form older AutoML YAML files and the REST payload use.

    Raises:
        InvalidSettingsError: The text is not a known distribution call.
    """
    match = DISTRIBUTION_TEXT.match(text)
    kind = match.group(1).lower() if match else ""
    cls = DISTRIBUTION_TYPES.get(kind)
    if match is None or cls is None:
        raise InvalidSettingsError(
            f"cannot read {text!r} as a distribution (expected e.g. \"choice('a','b')\" or "
            f"'uniform(0.001,0.01)'; known: {', '.join(DISTRIBUTION_TYPES)})"
        )
    args = [_parse_scalar(a) for a in re.split(r"\s*,\s*", match.group(2).strip()) if a.strip()]
    names = [name for name in cls.model_fields if name != "type"]  # positional order
    if cls is not Choice and len(args) != len(names):
        raise InvalidSettingsError(
            f"{text!r}: {kind} takes {len(names)} arguments ({', '.join(names)}), got {len(args)}"
        )
    data: dict[str, Any] = (
        {"values": args} if cls is Choice else dict(zip(names, args, strict=False))
    )
    try:
        return cls.model_validate({"type": kind, **data})
    except ValidationError as exc:
        raise InvalidSettingsError(
            f"{text!r} is not a valid distribution: {messages(exc)}"
        ) from exc
