"""ONNX export of a local model and the ONNX Runtime model: same boxes as torch, AutoML's
input and output names, outputs that :func:`detectkit.scoring.parse_onnx_output` reads."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the local extra (torch) is not installed")
pytest.importorskip("mlflow", reason="the local extra (mlflow) is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
pytest.importorskip("onnx", reason="onnx is not installed (the onnx extra)")

from detectkit.backends.local import onnx_runtime  # noqa: E402
from detectkit.backends.local.app import ModelRunner, load_model  # noqa: E402
from detectkit.errors import InvalidInputError, NotFoundError  # noqa: E402
from detectkit.scoring import parse_onnx_output  # noqa: E402

CLASSES = ["ace", "king", "queen"]
CORNERS = ("topX", "topY", "bottomX", "bottomY")


def _save(folder: Path, name: str = "ssdlite_mobilenet_v2", size: int = 64) -> Path:
    import torch

    from detectkit.backends.local.models import build_model
    from detectkit.backends.local.pyfunc import save_model

    torch.manual_seed(0)
    model = build_model(
        name, len(CLASSES), pretrained=False, load_weights=False, min_size=size, max_size=size
    )
    state = model.state_dict()
    for value in state.values():  # He init: a random SSD's default init answers ties only
        if value.is_floating_point() and value.ndim == 4:
            value.copy_(torch.randn_like(value) * (2.0 / value[0].numel()) ** 0.5)
    settings = {
        "model_name": name,
        "pretrained": False,
        "min_size": size,
        "max_size": size,
        "box_score_thresh": 0.0,
        "nms_iou_thresh": 0.5,
        "box_detections_per_img": 10,
    }
    return save_model(folder, state_dict=state, classes=CLASSES, settings=settings)


def _images() -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for width, height in [(90, 70), (64, 100), (128, 96)]:
        buffer = io.BytesIO()
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG")
        out.append(base64.b64encode(buffer.getvalue()).decode())
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory.mktemp("onnx") / "model")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _corners(answer: dict[str, list[dict[str, object]]]) -> np.ndarray:
    return np.array([[box["box"][k] for k in CORNERS] for box in answer["boxes"]])  # type: ignore[index]


def test_onnx_runtime_boxes_agree_with_torch(saved: Path) -> None:
    images = _images()
    torch_runner = ModelRunner(load_model(saved, runtime="torch"), threads=1)
    onnx_runner = ModelRunner(load_model(saved, runtime="onnx"), threads=1)
    assert torch_runner.runtime == "torch" and onnx_runner.runtime == "onnx"
    expected, got = torch_runner(images), onnx_runner(images)
    assert len(got) == len(images)
    for want, have in zip(expected, got, strict=True):
        assert len(have["boxes"]) == len(want["boxes"]) == 10
        assert [b["label"] for b in have["boxes"]] == [b["label"] for b in want["boxes"]]
        np.testing.assert_allclose(_corners(have), _corners(want), atol=1e-4, rtol=0)
        np.testing.assert_allclose(
            [b["score"] for b in have["boxes"]], [b["score"] for b in want["boxes"]], atol=1e-4
        )


def test_auto_picks_onnx_runtime_and_reuses_the_cached_export(saved: Path, tmp_path: Path) -> None:
    first = load_model(saved, runtime="auto")
    assert getattr(first, "runtime", None) == "onnx"
    cached = list((tmp_path / "cache" / "detectkit" / "onnx").glob("*.onnx"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert (
        load_model(saved, runtime="auto").path == cached[0]
        and cached[0].stat().st_mtime_ns == stamp
    )


def test_export_has_automl_names_and_parse_onnx_output_reads_it(
    saved: Path, tmp_path: Path
) -> None:
    import onnx
    from PIL import Image

    path = onnx_runtime.export_onnx(saved, tmp_path / "out" / "model.onnx")
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["boxes_0", "labels_0", "scores_0"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["labels"]) == CLASSES
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    raw = base64.b64decode(_images()[2])
    pixels = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.float32) / 255
    boxes, labels, scores = session.run(None, {"input": pixels.transpose(2, 0, 1)[None]})
    assert boxes.shape == (10, 4) and labels.dtype == np.int64
    prediction = parse_onnx_output(
        boxes, labels, scores, classes=CLASSES, input_size=(128, 96), image_size=(128, 96)
    )
    answer = ModelRunner(load_model(saved, runtime="torch"), threads=1)([_images()[2]])[0]
    assert list(prediction.labels) == [b["label"] for b in answer["boxes"]]
    np.testing.assert_allclose(prediction.detections.xyxy, _corners(answer), atol=1e-4)


def test_onnx_runtime_refuses_what_it_cannot_run(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="runtime: expected one of"):
        load_model(saved, runtime="tensorrt")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "MLmodel").write_text("flavors: {}\n")
    with pytest.raises(NotFoundError, match="use runtime='torch'"):
        load_model(plain, runtime="onnx")
    art = saved / "artifacts"
    settings = json.loads((art / "settings.json").read_text())
    other = tmp_path / "frcnn" / "artifacts"
    other.mkdir(parents=True)
    for name in ("model.pt", "labels.json"):
        (other / name).write_bytes((art / name).read_bytes())
    settings["model_name"] = "yolo_v9"  # not a local model
    (other / "settings.json").write_text(json.dumps(settings))
    with pytest.raises(NotFoundError, match="not a model folder the local backend saved"):
        onnx_runtime.export_onnx(other.parent, tmp_path / "x.onnx")
    assert not onnx_runtime.usable(other.parent)  # "auto" serves it with torch


def test_onnx_runtime_without_onnxruntime_names_the_extra(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detectkit.errors import MissingDependencyError

    monkeypatch.setattr(onnx_runtime, "onnx_available", lambda: False)
    with pytest.raises(MissingDependencyError, match=r"detectkit\[onnx\]"):
        load_model(saved, runtime="onnx")
    assert getattr(load_model(saved, runtime="auto"), "runtime", "torch") == "torch"  # fallback
