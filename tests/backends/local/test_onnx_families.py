"""ONNX export of the two-stage and RetinaNet local models: ONNX Runtime answers the boxes torch
answers (to 1e-4 of the image) on images of other sizes than the one the export traced."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the local extra (torch) is not installed")
pytest.importorskip("mlflow", reason="the local extra (mlflow) is not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
pytest.importorskip("onnx", reason="onnx is not installed (the onnx extra)")

from detectkit.backends.local import onnx_runtime
from detectkit.backends.local.app import ModelRunner, load_model

CLASSES = ["ace", "king", "queen"]
CORNERS = ("topX", "topY", "bottomX", "bottomY")
# none is the traced size (min_size x 4/3 min_size): the file must take any size
SIZES = [(90, 70), (64, 100), (150, 200), (128, 96)]


def _save(folder: Path, name: str, size: int) -> Path:
    """A random model whose boxes are not all ties: backbone batch norm statistics measured on
    random images (the default init leaves constant features), every box kept (threshold 0)."""
    import torch
    from torch import nn

    from detectkit.backends.local.models import build_model
    from detectkit.backends.local.pyfunc import save_model

    torch.manual_seed(0)
    model = build_model(
        name,
        len(CLASSES),
        pretrained=False,
        load_weights=False,
        min_size=size,
        max_size=size * 4 // 3,
    )
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calls below
    backbone: nn.Module = model.backbone  # type: ignore[assignment]
    backbone.train()
    with torch.no_grad():
        for _ in range(3):
            backbone(model.transform.normalize(torch.rand(2, 3, size, size)))  # type: ignore[operator,union-attr]
    settings = {
        "model_name": name,
        "pretrained": False,
        "min_size": size,
        "max_size": size * 4 // 3,
        "box_score_thresh": 0.0,
        "nms_iou_thresh": 0.5,
        "box_detections_per_img": 20,
    }
    return save_model(folder, state_dict=model.state_dict(), classes=CLASSES, settings=settings)


def _images() -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(1)
    out = []
    for width, height in SIZES:
        buffer = io.BytesIO()
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG")
        out.append(base64.b64encode(buffer.getvalue()).decode())
    return out


def _rows(answer: dict[str, list[dict[str, object]]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    boxes = answer["boxes"]
    corners = np.array([[b["box"][k] for k in CORNERS] for b in boxes])  # type: ignore[index]
    return corners, np.array([b["score"] for b in boxes]), [str(b["label"]) for b in boxes]


def _assert_same_boxes(
    want: dict[str, list[dict[str, object]]], have: dict[str, list[dict[str, object]]]
) -> float:
    """Same scores (to 1e-4) in the same order; each box matched by one box of the other
    runtime with its label and score whose corners agree to 1e-4 (boxes of exactly tied
    scores may be sorted differently by the two runtimes). Returns the largest difference."""
    w_xy, w_score, w_label = _rows(want)
    h_xy, h_score, h_label = _rows(have)
    assert len(h_score) == len(w_score) > 0
    np.testing.assert_allclose(h_score, w_score, atol=1e-4, rtol=0)
    worst = 0.0
    free = set(range(len(h_score)))
    for i in range(len(w_score)):
        candidates = [
            j for j in free if h_label[j] == w_label[i] and abs(h_score[j] - w_score[i]) <= 1e-4
        ]
        assert candidates, f"box {i} of torch has no ONNX Runtime box with its label and score"
        j = min(candidates, key=lambda k: float(np.abs(h_xy[k] - w_xy[i]).max()))
        diff = float(np.abs(h_xy[j] - w_xy[i]).max())
        assert diff <= 1e-4, f"box {i}: corners differ by {diff}"
        worst = max(worst, diff)
        free.remove(j)
    return worst


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("name", "size", "order"),
    [
        ("fasterrcnn_mobilenet_v3_large_fpn", 96, ["boxes_0", "labels_0", "scores_0"]),
        ("fasterrcnn_mobilenet_v2_fpn", 96, ["boxes_0", "labels_0", "scores_0"]),
        ("retinanet_resnet50_fpn", 64, ["boxes_0", "scores_0", "labels_0"]),
    ],
)
def test_onnx_runtime_boxes_agree_with_torch_for_every_family(
    tmp_path: Path, name: str, size: int, order: list[str]
) -> None:
    import onnx

    saved = _save(tmp_path / "model", name, size)
    assert onnx_runtime.can_export(saved) and onnx_runtime.usable(saved)
    auto = load_model(saved, runtime="auto")  # what the endpoint and project.score pick
    assert getattr(auto, "runtime", None) == "onnx"
    proto = onnx.load(str(auto.path))  # exported on first use
    assert [o.name for o in proto.graph.output] == order
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[2:]] == ["height", "width"]
    images = _images()
    torch_runner = ModelRunner(load_model(saved, runtime="torch"), threads=1)
    onnx_runner = ModelRunner(auto, threads=1)
    worst = max(
        _assert_same_boxes(want, have)
        for want, have in zip(torch_runner(images), onnx_runner(images), strict=True)
    )
    print(f"{name}: corners agree to {worst:.2e} of the image")
