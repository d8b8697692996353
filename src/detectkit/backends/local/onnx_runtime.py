"""ONNX export of a local model and an ONNX Runtime model behind the same scoring contract.

**The exported file** follows AutoML's object-detection ONNX export (Faster R-CNN / RetinaNet),
so that :func:`detectkit.scoring.parse_onnx_output` reads its outputs::

    input      "input"  float32 (1, 3, height, width): RGB scaled to [0, 1], any size
               (the model resizes and normalizes inside, as AutoML's model does with
               enable_onnx_normalization=True)
    outputs    "boxes_0"  (n, 4) x_min, y_min, x_max, y_max in pixels of the input
               "labels_0" (n,)   int64 class ids into labels.json (0 is the first class)
               "scores_0" (n,)   float32 confidences
               (RetinaNet models answer boxes_0, scores_0, labels_0, in AutoML's order)

The whole torchvision model is exported (its resize and normalization included) with
``torch.onnx.export`` (TorchScript tracer, opset 17), so both runtimes see the same
preprocessing. Every local family exports (SSD, Faster R-CNN, RetinaNet): torchvision's
detection models switch to their ONNX-friendly branches while traced (sizes read from the
input's shape, ``topk`` bounded by the anchors present), so one file takes inputs of any size;
boxes agree with torch to 1e-4 of the image. Boxes whose scores tie exactly may come in
another order (the sort of equal scores differs between the runtimes). The class list and
the model settings are stored in the file's metadata (``labels``, ``settings``).

**The runtime**: :func:`load_onnx_model` opens an ONNX Runtime session with one intra-op
thread (as the local endpoint runs torch) and returns an :class:`OnnxModel` whose
``predict(DataFrame)`` answers what the saved MLflow model answers: one row per image with a
``boxes`` list of ``{"box": {...}, "label", "score"}`` in normalized coordinates.

torch is imported only to export, onnxruntime only to load a session.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectkit.backends.local.models import LOCAL_MODELS, build_model, model_spec
from detectkit.errors import InvalidInputError, NotFoundError, missing_dependency
from detectkit.scoring.contract import box_entry, image_bytes

__all__ = [
    "EXPORTABLE_FAMILIES",
    "INPUT_NAME",
    "ONNX_FILE",
    "OPSET",
    "OnnxModel",
    "can_export",
    "export_onnx",
    "load_onnx_model",
    "onnx_available",
    "onnx_file",
    "output_names",
    "usable",
]

logger = logging.getLogger("detectkit.onnx")

ONNX_FILE = "model.onnx"  # in a model folder's artifacts/, when training saved one
INPUT_NAME = "input"
OPSET = 17
# families whose exported boxes are checked against torch (to 1e-4 of the image, on inputs of
# other sizes than the traced one): tests/backends/local/test_onnx_runtime.py (SSD) and
# test_onnx_families.py (Faster R-CNN, RetinaNet)
EXPORTABLE_FAMILIES = ("ssd", "fasterrcnn", "retinanet")


def onnx_available() -> bool:
    """Whether ONNX Runtime can be imported."""
    try:
        import onnxruntime  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def output_names(model_name: str) -> list[str]:
    """The output names of an exported model, in AutoML's order for its family."""
    if model_spec(model_name).family == "retinanet":
        return ["boxes_0", "scores_0", "labels_0"]
    return ["boxes_0", "labels_0", "scores_0"]


def _artifacts(folder: Path) -> Path:
    return folder / "artifacts"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def can_export(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` is a model folder the local backend saved (weights, settings and
    labels) of an architecture whose export is verified (:data:`EXPORTABLE_FAMILIES`)."""
    art = _artifacts(Path(folder))
    if not all((art / f).is_file() for f in ("model.pt", "settings.json", "labels.json")):
        return False
    try:
        name = _read_json(art / "settings.json").get("model_name")
    except (OSError, ValueError, AttributeError):
        return False
    return name in LOCAL_MODELS and model_spec(name).family in EXPORTABLE_FAMILIES


def _model_name(folder: Path) -> str | None:
    try:
        name = _read_json(_artifacts(folder) / "settings.json").get("model_name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def export_onnx(
    folder: str | os.PathLike[str], path: str | os.PathLike[str], *, opset: int = OPSET
) -> Path:
    """Export the model saved in MLflow folder ``folder`` to an ONNX file at ``path``.

    Args:
        folder: A model folder the local backend saved (``artifacts/model.pt``,
            ``settings.json``, ``labels.json``).
        path: The ``.onnx`` file to write (replaced atomically if it exists; parent folders
            are created).
        opset: ONNX opset (11 or later).

    Returns:
        ``path``.

    Raises:
        NotFoundError: ``folder`` is not a model folder the local backend saved.
        MissingDependencyError: torch, torchvision or onnx is not installed.
    """
    source = Path(folder)
    name = _model_name(source)
    if name in LOCAL_MODELS and model_spec(name).family not in EXPORTABLE_FAMILIES:
        raise InvalidInputError(
            f"{source}: ONNX export of {name} is not supported (supported families: "
            f"{', '.join(EXPORTABLE_FAMILIES)}); score it with runtime='torch'"
        )
    if not can_export(source):
        raise NotFoundError(
            f"{source}: not a model folder the local backend saved (expected "
            "artifacts/model.pt, settings.json and labels.json of a local model); export "
            "the folder that run.download_model() wrote for a local run"
        )
    if opset < 11:
        raise InvalidInputError(f"opset: expected 11 or later, got {opset}")
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import torch
    except ImportError as exc:
        raise missing_dependency("onnx and torch", "onnx") from exc
    art = _artifacts(source)
    settings = _read_json(art / "settings.json")
    classes = list(_read_json(art / "labels.json"))
    model = _build(settings, classes)
    model.load_state_dict(torch.load(art / "model.pt", map_location="cpu", weights_only=True))
    names = output_names(settings["model_name"])
    wrapper = _exportable(model.eval(), names)
    side = int(settings.get("min_size") or model_spec(settings["model_name"]).min_size)
    example = torch.rand(1, 3, side, side + side // 3)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".detectkit-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on torchvision's branches
            torch.onnx.export(
                wrapper,
                (example,),
                tmp,
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_axes={INPUT_NAME: {2: "height", 3: "width"}}
                | {name: {0: "n"} for name in names},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        _add_metadata(tmp, classes, settings)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _build(settings: dict[str, Any], classes: Sequence[str]) -> Any:
    return build_model(
        settings["model_name"],
        len(classes),
        pretrained=bool(settings.get("pretrained", False)),
        load_weights=False,
        min_size=settings.get("min_size"),
        max_size=settings.get("max_size"),
        score_threshold=float(settings.get("box_score_thresh", 0.3)),
        nms_threshold=float(settings.get("nms_iou_thresh", 0.5)),
        detections_per_image=int(settings.get("box_detections_per_img", 100)),
    )


def _exportable(model: Any, names: Sequence[str]) -> Any:
    """``model`` taking one ``(1, 3, h, w)`` image and answering AutoML's three outputs
    (class ids shifted past the background), in the order of ``names``."""
    import torch

    order = tuple(names)

    class Exportable(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            result = self.model([image[0]])[0]
            values = {
                "boxes_0": result["boxes"],
                "labels_0": result["labels"] - 1,
                "scores_0": result["scores"],
            }
            return tuple(values[name] for name in order)

    return Exportable().eval()


def _add_metadata(path: str, classes: Sequence[str], settings: dict[str, Any]) -> None:
    import onnx

    proto = onnx.load(path)
    for key, value in (("labels", classes), ("settings", settings)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    proto.producer_name = "detectkit"
    onnx.save(proto, path)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "detectkit" / "onnx"


def onnx_file(folder: str | os.PathLike[str], *, export: bool = True) -> Path | None:
    """The ONNX file for model folder ``folder``: ``artifacts/model.onnx`` when it has one,
    else an export cached under ``$XDG_CACHE_HOME/detectkit/onnx`` (keyed by a digest of the
    weights, settings, labels and the torch version), exported now when ``export`` and the
    folder can be exported; None when there is none."""
    source = Path(folder)
    saved = _artifacts(source) / ONNX_FILE
    if saved.is_file():
        return saved
    if not can_export(source):
        return None
    import torch

    digest = hashlib.sha256(torch.__version__.encode())
    for name in ("settings.json", "labels.json", "model.pt"):
        digest.update((_artifacts(source) / name).read_bytes())
    cached = _cache_dir() / f"{digest.hexdigest()[:24]}.onnx"
    if cached.is_file():
        return cached
    if not export:
        return None
    logger.info("exporting %s to ONNX (%s)", source, cached)
    return export_onnx(source, cached)


class OnnxModel:
    """An exported model in an ONNX Runtime session, answering like the saved MLflow model.

    Args:
        path: The ``.onnx`` file (its metadata holds the labels unless ``classes`` is given).
        classes: The class list (default: the file's ``labels`` metadata).
        threads: Intra-op threads of the session (default 1).
    """

    runtime = "onnx"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        classes: Sequence[str] | None = None,
        threads: int = 1,
    ) -> None:
        try:
            import onnxruntime  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            raise missing_dependency("onnxruntime", "onnx") from exc
        self._ort = onnxruntime
        self.path = Path(path)
        self._threads = 0
        self._session: Any = None
        self.set_threads(threads)
        session: Any = self._session
        meta = session.get_modelmeta().custom_metadata_map
        if classes is None:
            if "labels" not in meta:
                raise InvalidInputError(
                    f"{self.path}: no 'labels' metadata; pass classes= (labels.json)"
                )
            classes = json.loads(meta["labels"])
        self.classes = tuple(classes)
        self.output_names = [o.name for o in session.get_outputs()]

    def set_threads(self, threads: int) -> None:
        """Open the session with ``threads`` intra-op threads (again only when it changes)."""
        threads = max(int(threads), 1)
        if threads == self._threads:
            return
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self._session = self._ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self._threads = threads

    def run(self, image: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
        """The raw outputs for one ``(1, 3, h, w)`` float32 input, by output name."""
        values = self._session.run(None, {INPUT_NAME: image})
        return dict(zip(self.output_names, values, strict=True))

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """Boxes for each image of ``model_input["image"]`` (base64 or raw bytes), as a
        DataFrame with one ``boxes`` column, like the saved MLflow model."""
        import pandas as pd

        column = model_input["image"] if hasattr(model_input, "columns") else model_input
        answers = [self.boxes(value, i) for i, value in enumerate(list(column))]
        return pd.DataFrame({"boxes": answers}, columns=["boxes"])

    def boxes(self, value: Any, index: int = 0) -> list[dict[str, Any]]:
        """The answer for one image (base64 text or raw bytes)."""
        array = decode_image(value, index)
        height, width = array.shape[:2]
        tensor = np.ascontiguousarray(array.transpose(2, 0, 1)[None], dtype=np.float32)
        tensor /= np.float32(255.0)
        out = self.run(tensor)
        scale = np.array([width, height, width, height], dtype=np.float64)
        xyxy = np.clip(out["boxes_0"].astype(np.float64) / scale, 0.0, 1.0)
        scores = out["scores_0"].astype(np.float64)
        classes = self.classes
        return [
            box_entry(box, classes[label], score)
            for box, score, label in zip(
                xyxy.tolist(), scores.tolist(), out["labels_0"].tolist(), strict=True
            )
        ]


def decode_image(value: Any, index: int = 0) -> np.ndarray[Any, Any]:
    """An image (base64 text or raw bytes) as an ``(h, w, 3)`` uint8 RGB array, EXIF
    orientation applied: the decoding of the saved MLflow model."""
    from PIL import Image, ImageOps

    raw = image_bytes(value, f"image {index}")
    try:
        opened = Image.open(io.BytesIO(raw))
        image = (ImageOps.exif_transpose(opened) or opened).convert("RGB")
    except Exception as exc:
        raise ValueError(
            f"image {index}: not a readable image ({type(exc).__name__}: {exc})"
        ) from exc
    return np.asarray(image, dtype=np.uint8)


def load_onnx_model(
    folder: str | os.PathLike[str], *, threads: int = 1, export: bool = True
) -> OnnxModel:
    """An :class:`OnnxModel` for MLflow model folder ``folder`` (see :func:`onnx_file`).

    Raises:
        MissingDependencyError: onnxruntime is not installed (the ``onnx`` extra).
        NotFoundError: The folder has no ONNX file and cannot be exported.
    """
    if not onnx_available():
        raise missing_dependency("onnxruntime", "onnx")
    source = Path(folder)
    path = onnx_file(source, export=export)
    if path is None:
        raise NotFoundError(
            f"{source}: no artifacts/{ONNX_FILE} and not a local model folder that can be "
            "exported; use runtime='torch' for this model"
        )
    labels = _artifacts(source) / "labels.json"
    classes = list(_read_json(labels)) if labels.is_file() else None
    return OnnxModel(path, classes=classes, threads=threads)


def usable(folder: str | os.PathLike[str]) -> bool:
    """Whether ``runtime="auto"`` picks ONNX Runtime for ``folder``: onnxruntime imports and
    the folder has ``artifacts/model.onnx`` or is a local model (exported on first use)."""
    source = Path(folder)
    if not onnx_available():
        return False
    return (_artifacts(source) / ONNX_FILE).is_file() or can_export(source)
