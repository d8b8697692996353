"""The MLflow model a local trial saves: a ``python_function`` model speaking AutoML's contract.

Layout (the same as an AutoML object-detection MLflow model)::

    mlflow-model/
        MLmodel                 flavor python_function, signature image (binary) -> boxes (string)
        python_model.pkl        a DetectionModel (no weights inside)
        artifacts/model.pt      the state_dict
        artifacts/settings.json model_name, pretrained, min_size, max_size, box_score_thresh,
                                nms_iou_thresh, box_detections_per_img (edit and re-register to
                                change inference, as with AutoML)
        artifacts/labels.json   the ordered class list
        code/detectkit/         detectkit's source (code_paths), so the model loads where
                                detectkit is not installed, e.g. an Azure ML no-code deployment
        requirements.txt, python_env.yaml, conda.yaml
                                mlflow, torch, torchvision, pillow, numpy, pandas, pydantic

**Input**: a pandas DataFrame with an ``image`` column of base64 strings (what MLflow builds
from ``{"input_data": {"columns": ["image"], "data": [...]}}``), or of raw image bytes (what
MLflow's scoring server gives for a ``binary`` column). **Output**: a DataFrame with one row
per image and one column ``boxes``: a list of ``{"box": {"topX", "topY", "bottomX",
"bottomY"}, "label", "score"}`` with normalized coordinates, so that its records are the
AutoML online response ``[{"boxes": [...]}, ...]``.

This module imports MLflow at the top (the model class derives from ``PythonModel``); only the
local backend's training and model loading import it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
from mlflow.pyfunc.model import PythonModel

from detectkit.backends.local.models import build_model
from detectkit.backends.mlflow_runs import quiet_mlflow
from detectkit.scoring.contract import box_entry, image_bytes

__all__ = [
    "LABELS_FILE",
    "MODEL_FILE",
    "SETTINGS_FILE",
    "DetectionModel",
    "quiet_mlflow",
    "requirements",
    "save_model",
]

MODEL_FILE = "model.pt"
SETTINGS_FILE = "settings.json"
LABELS_FILE = "labels.json"
_BATCH = 8


def requirements() -> list[str]:
    """The pip requirements declared in the saved model: MLflow (which unpickles the model),
    torch and torchvision (whose ``state_dict`` layout the weights follow) pinned to the
    running versions; pillow, numpy, pandas and pydantic (detectkit's code) unpinned."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in ("mlflow", "torch", "torchvision"):
        try:
            out.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:  # pragma: no cover - training needs both
            out.append(package)
    return [*out, "pillow", "numpy", "pandas", "pydantic>=2.5,<3"]


def save_model(
    path: str | os.PathLike[str],
    *,
    state_dict: Mapping[str, Any],
    classes: Sequence[str],
    settings: Mapping[str, Any],
) -> Path:
    """Save trained weights as an MLflow pyfunc model folder at ``path`` (must not exist).

    Args:
        path: The folder to create.
        state_dict: The model's weights.
        classes: The ordered class names (class id ``i`` is ``classes[i]``).
        settings: ``settings.json``: ``model_name`` and ``pretrained`` (the architecture)
            and the inference thresholds (see the module docs).

    Returns:
        ``path``.
    """
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    target = Path(path)
    with tempfile.TemporaryDirectory(prefix="detectkit-pyfunc-") as tmp:
        work = Path(tmp)
        torch.save(dict(state_dict), work / MODEL_FILE)
        (work / SETTINGS_FILE).write_text(json.dumps(dict(settings), indent=2), encoding="utf-8")
        (work / LABELS_FILE).write_text(json.dumps(list(classes)), encoding="utf-8")
        code = work / "code" / "detectkit"
        shutil.copytree(
            Path(__file__).resolve().parents[2],
            code,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        signature = ModelSignature(
            inputs=Schema([ColSpec("binary", "image")]),
            outputs=Schema([ColSpec("string", "boxes")]),
        )
        with quiet_mlflow():
            mlflow.pyfunc.save_model(
                str(target),
                python_model=DetectionModel(),
                artifacts={
                    "model": str(work / MODEL_FILE),
                    "settings": str(work / SETTINGS_FILE),
                    "labels": str(work / LABELS_FILE),
                },
                code_paths=[str(code)],
                pip_requirements=requirements(),
                signature=signature,
            )
    return target


class DetectionModel(PythonModel):  # type: ignore[misc]
    """A torchvision detector behind the AutoML object-detection scoring contract."""

    def load_context(self, context: Any) -> None:
        """Rebuild the architecture named in ``settings.json`` and load ``model.pt``."""
        import torch

        artifacts = context.artifacts
        self.settings = json.loads(Path(artifacts["settings"]).read_text(encoding="utf-8"))
        self.classes = tuple(json.loads(Path(artifacts["labels"]).read_text(encoding="utf-8")))
        s = self.settings
        model = build_model(
            s["model_name"],
            len(self.classes),
            pretrained=bool(s.get("pretrained", False)),
            load_weights=False,
            min_size=s.get("min_size"),
            max_size=s.get("max_size"),
            score_threshold=float(s.get("box_score_thresh", 0.3)),
            nms_threshold=float(s.get("nms_iou_thresh", 0.5)),
            detections_per_image=int(s.get("box_detections_per_img", 100)),
        )
        state = torch.load(artifacts["model"], map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = model.to(self.device).eval()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Boxes for each image of ``model_input["image"]`` (see the module docs)."""
        import torch
        from PIL import Image, ImageOps

        column = model_input["image"] if hasattr(model_input, "columns") else model_input
        tensors = []
        for i, value in enumerate(list(column)):
            raw = image_bytes(value, f"image {i}")
            try:
                opened = Image.open(io.BytesIO(raw))
                image = (ImageOps.exif_transpose(opened) or opened).convert("RGB")
            except Exception as exc:
                raise ValueError(
                    f"image {i}: not a readable image ({type(exc).__name__}: {exc})"
                ) from exc
            array = np.asarray(image, dtype=np.uint8).copy()
            tensors.append(torch.from_numpy(array).permute(2, 0, 1))
        answers: list[list[dict[str, Any]]] = []
        with torch.inference_mode():
            # on a CPU one image per call is fastest (8 per call measured 35% slower per
            # image with one thread: activations leave the cache); a GPU gains from batches
            step = _BATCH if str(self.device).startswith("cuda") else 1
            for start in range(0, len(tensors), step):
                chunk = tensors[start : start + step]
                batch = [t.to(self.device).float().div_(255) for t in chunk]
                for tensor, result in zip(chunk, self.model(batch), strict=True):
                    answers.append(self._boxes(tensor, result))
        return pd.DataFrame({"boxes": answers}, columns=["boxes"])

    def _boxes(self, tensor: Any, result: Mapping[str, Any]) -> list[dict[str, Any]]:
        height, width = tensor.shape[-2:]
        scale = np.array([width, height, width, height], dtype=np.float64)
        xyxy = np.clip(result["boxes"].double().cpu().numpy() / scale, 0.0, 1.0)
        scores = result["scores"].double().cpu().numpy()
        labels = result["labels"].cpu().numpy()
        classes = self.classes
        return [
            box_entry(box, classes[label - 1], score)
            for box, score, label in zip(
                xyxy.tolist(), scores.tolist(), labels.tolist(), strict=True
            )
        ]
