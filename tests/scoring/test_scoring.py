"""Tests for detectkit.scoring: the AutoML scoring contract (request, responses, ONNX)."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectkit import InvalidInputError, InvalidResponseError, NotFoundError
from detectkit.prediction import Detections, Prediction
from detectkit.scoring.response import (
    build_request,
    decode_request,
    encode_request,
    format_response,
    image_sizes,
    parse_batch_output,
    parse_onnx_output,
    parse_response,
    parse_yolo_onnx_output,
    read_predictions,
)
from detectkit.synthetic import make_dataset

FIXTURES = Path(__file__).parents[1] / "fixtures" / "scoring"
CLASSES = ("can", "carton", "milk_bottle", "water_bottle")
# the real sample of the Azure ML docs, in response order
SAMPLE_LABELS = ["milk_bottle", "can", "water_bottle"]
SAMPLE_XYXY = [
    [0.224, 0.285, 0.399, 0.620],
    [0.664, 0.484, 0.959, 0.812],
    [0.423, 0.253, 0.632, 0.725],
]
SAMPLE_SCORES = [0.937, 0.891, 0.876]


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two generated PNG images of different sizes."""
    root = tmp_path_factory.mktemp("cards")
    small = make_dataset(root / "a", n_images=1, size=(40, 30), seed=1).records[0].image
    large = make_dataset(root / "b", n_images=1, size=(64, 48), seed=2).records[0].image
    return [small, large]


def _load(path: str | Path) -> Any:
    """A Pillow image read fully, its file closed."""
    from PIL import Image

    with Image.open(path) as im:
        return im.copy()


def _pixels(encoded_b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded_b64))).convert("RGB"))


# ----------------------------------------------------------------------- requests
def test_build_request_from_each_kind_decodes_to_the_same_pixels(cards: list[str]) -> None:

    path = cards[0]
    raw = Path(path).read_bytes()
    pixels = np.asarray(_load(path).convert("RGB"))
    kinds: list[Any] = [path, Path(path), raw, bytearray(raw), _load(path), pixels]
    body = build_request(kinds)
    assert body["input_data"]["columns"] == ["image"]
    data = body["input_data"]["data"]
    assert len(data) == len(kinds)
    assert all(isinstance(item, str) for item in data)
    for item in data:
        np.testing.assert_array_equal(_pixels(item), pixels)
    # files and bytes travel unchanged, without re-encoding
    assert base64.b64decode(data[0]) == raw
    assert base64.b64decode(data[2]) == raw


@pytest.mark.parametrize(
    "single",
    ["path", "bytes", "array", "pil"],
)
def test_build_request_accepts_a_single_image(cards: list[str], single: str) -> None:

    path = cards[1]
    value: Any = {
        "path": path,
        "bytes": Path(path).read_bytes(),
        "array": np.asarray(_load(path)),
        "pil": _load(path),
    }[single]
    (item,) = build_request(value)["input_data"]["data"]
    assert _pixels(item).shape == (48, 64, 3)


def test_build_request_splits_a_batch_array_and_keeps_grey_images() -> None:
    batch = np.zeros((3, 5, 7, 3), dtype=np.uint8)
    batch[1, 2, 3] = (10, 200, 30)
    data = build_request(batch)["input_data"]["data"]
    assert len(data) == 3
    np.testing.assert_array_equal(_pixels(data[1]), batch[1])
    grey = np.full((4, 6), 77, dtype=np.uint8)
    assert _pixels(build_request(grey)["input_data"]["data"][0])[0, 0].tolist() == [77, 77, 77]


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        ([], InvalidInputError, "at least one image"),
        ("missing.png", NotFoundError, r"images\[0\]: image file not found"),
        (b"not an image", InvalidInputError, r"images\[0\]: not an image Pillow can read"),
        (b"", InvalidInputError, "got empty bytes"),
        (np.zeros((4, 4, 3), dtype=np.float32), InvalidInputError, "expected a uint8 image"),
        (np.zeros((4, 4, 5), dtype=np.uint8), InvalidInputError, r"got shape \(4, 4, 5\)"),
        (np.zeros(4, dtype=np.uint8), InvalidInputError, "expected an array"),
        ([42], InvalidInputError, r"images\[0\]: expected a file path.*got int"),
        (42, InvalidInputError, "images: expected a file path"),
    ],
)
def test_build_request_rejects(images: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build_request(images)


def test_build_request_rejects_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="got a folder"):
        build_request(tmp_path)


def test_encode_and_decode_request(cards: list[str]) -> None:
    body = encode_request(cards)
    assert json.loads(body) == build_request(cards)
    assert decode_request(body) == [Path(p).read_bytes() for p in cards]
    # what the Azure ML examples send: base64.encodebytes (line breaks), rows as lists
    raw = Path(cards[1]).read_bytes()
    legacy = {
        "input_data": {
            "columns": ["image"],
            "index": [0],
            "data": [[base64.encodebytes(raw).decode()]],
        }
    }
    assert decode_request(json.dumps(legacy)) == [raw]
    assert decode_request(legacy) == [raw]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"dataframe_split": {"columns": ["image"], "data": []}}', 'missing key "input_data"'),
        ('{"input_data": {"columns": ["image"]}}', r"request.input_data.data: expected a list"),
        ('{"input_data": {"columns": ["image"], "data": []}}', "expected at least one image"),
        ('{"input_data": {"columns": ["img"], "data": []}}', "columns: expected"),
        ('{"input_data": {"columns": ["image"], "data": [3]}}', r"data\[0\]: expected a base64"),
        ('{"input_data": {"columns": ["image"], "data": ["a"]}}', r"data\[0\]: not valid base64"),
        ("[1, 2", "request: not valid JSON"),
    ],
)
def test_decode_request_rejects(body: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        decode_request(body)


def test_image_sizes_of_each_kind(cards: list[str]) -> None:

    path = cards[1]
    kinds: list[Any] = [
        path,
        Path(path).read_bytes(),
        _load(path),
        np.zeros((48, 64, 3), np.uint8),
    ]
    assert image_sizes(kinds) == [(64, 48)] * 4
    assert image_sizes(cards[0]) == [(40, 30)]


def test_image_sizes_honour_exif_orientation(tmp_path: Path) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (60, 20)).save(path, exif=exif)
    assert image_sizes([path, path.read_bytes()]) == [(20, 60), (20, 60)]


# ----------------------------------------------------------------------- online response
def test_parse_the_documented_sample() -> None:
    preds = parse_response(fixture_text("online_fridge.json"))
    assert [len(p) for p in preds] == [3, 0, 1]
    first = preds[0]
    assert first.classes == ("can", "milk_bottle", "water_bottle")  # sorted labels seen
    assert first.labels.tolist() == SAMPLE_LABELS
    assert first.detections.xyxy.tolist() == SAMPLE_XYXY
    assert first.scores.tolist() == SAMPLE_SCORES
    assert first.detections.xyxy.dtype == np.float64
    assert all(p.classes == first.classes for p in preds)  # one vocabulary per call
    assert (first.image, first.size) == (None, None)


def test_parse_with_the_model_classes() -> None:
    preds = parse_response(fixture_text("online_fridge.json"), classes=CLASSES)
    assert preds[0].classes == CLASSES
    assert preds[0].detections.class_ids.tolist() == [2, 0, 3]
    assert preds[2].detections.class_ids.tolist() == [0]


def test_parse_accepts_bytes_text_lists_and_double_encoded_bodies() -> None:
    text = fixture_text("online_fridge.json")
    expected = parse_response(text)
    assert parse_response(text.encode()) == expected
    assert parse_response(json.loads(text)) == expected
    assert parse_response(json.dumps(text)) == expected  # a script returned json.dumps(...)


def test_parse_fills_image_and_size_from_the_images_sent(cards: list[str]) -> None:
    body = json.dumps([{"boxes": []}, json.loads(fixture_text("online_fridge.json"))[2]])
    preds = parse_response(body, images=cards)
    assert [(p.image, p.size) for p in preds] == [(cards[0], (40, 30)), (cards[1], (64, 48))]
    np.testing.assert_allclose(
        preds[1].to_pixels(), [[0.664 * 64, 0.484 * 48, 0.959 * 64, 0.812 * 48]]
    )
    sized = parse_response(body, images=[b"x", b"y"], sizes=[(np.int64(10), 20), None])
    assert [(p.image, p.size) for p in sized] == [(None, (10, 20)), (None, None)]
    with pytest.raises(
        InvalidResponseError, match="expected 3 elements, one per image sent, got 2"
    ):
        parse_response(body, images=[*cards, cards[0]])
    with pytest.raises(InvalidInputError, match=r"sizes: expected 2 \(width, height\) pairs"):
        parse_response(body, sizes=[(1, 1)])
    with pytest.raises(InvalidInputError, match=r"sizes\[1\]: expected \(width, height\)"):
        parse_response(body, sizes=[(1, 1), (0, 5)])


def test_parse_empty_boxes() -> None:
    preds = parse_response(fixture_text("online_empty.json"), classes=CLASSES)
    assert [len(p) for p in preds] == [0, 0]
    assert preds[0].detections.xyxy.shape == (0, 4)
    assert parse_response("[]") == []
    assert parse_response('[{"boxes": []}]')[0].classes == ()


def test_parse_clips_coordinates_a_hair_outside_the_image() -> None:
    (pred,) = parse_response(fixture_text("online_clip.json"))
    assert pred.detections.xyxy.tolist() == [[0.0, 0.285, 0.399, 1.0]]


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("bad_missing_key.json", r'^response\[1\]\.boxes\[0\]\.box: missing key "topX"$'),
        (
            "bad_wrong_type.json",
            r'^response\[0\]\.boxes\[2\]\.box\.topY: expected a number, got "abc"$',
        ),
        (
            "bad_boxes_not_list.json",
            r"^response\[1\]\.boxes: expected a list of boxes, got an object",
        ),
        ("bad_not_list.json", r"^response: expected a JSON list with one element per image"),
        (
            "bad_pixels.json",
            r"^response\[0\]\.boxes\[1\]\.box\.topX: expected a normalized coordinate",
        ),
        ("bad_truncated.json", r"^response: not valid JSON: .*\n  hint: a body cut short"),
    ],
)
def test_parse_malformed_fixtures(fixture: str, message: str) -> None:
    with pytest.raises(InvalidResponseError, match=message):
        parse_response(fixture_text(fixture))


def _sample_box(**changes: Any) -> dict[str, Any]:
    box = {
        "box": {"topX": 0.1, "topY": 0.2, "bottomX": 0.3, "bottomY": 0.4},
        "label": "can",
        "score": 0.5,
    }
    for key, value in changes.items():
        if key in box["box"]:
            box["box"][key] = value
        else:
            box[key] = value
    return box


@pytest.mark.parametrize(
    ("element", "message"),
    [
        (7, r"response\[1\]: expected an object with a \"boxes\" list, got 7"),
        ({"box": []}, r"response\[1\]: missing key \"boxes\""),
        ({"boxes": [_sample_box(), "x"]}, r"response\[1\]\.boxes\[1\]: expected an object"),
        (
            {"boxes": [{"box": {}, "label": "can"}]},
            r'response\[1\]\.boxes\[0\]: missing key "score"',
        ),
        (
            {"boxes": [_sample_box(box=[0, 0, 1, 1])]},
            r"boxes\[0\]\.box: expected an object with topX",
        ),
        (
            {"boxes": [_sample_box(topY=None)]},
            r"boxes\[0\]\.box\.topY: expected a number, got null",
        ),
        (
            {"boxes": [_sample_box(topY=True)]},
            r"boxes\[0\]\.box\.topY: expected a number, got true",
        ),
        (
            {"boxes": [_sample_box(bottomX=float("nan"))]},
            r"bottomX: expected a finite number, got nan",
        ),
        ({"boxes": [_sample_box(bottomX=10**400)]}, r"bottomX: expected a finite number"),
        (
            {"boxes": [_sample_box(bottomX=0.05)]},
            r"boxes\[0\]\.box: bottomX 0\.05 < topX 0\.1 \(inverted",
        ),
        (
            {"boxes": [_sample_box(topY=-0.5)]},
            r"topY: expected a normalized coordinate in \[0, 1\], got -0\.5",
        ),
        ({"boxes": [_sample_box(label=3)]}, r"boxes\[0\]\.label: expected a string, got 3"),
        (
            {"boxes": [_sample_box(label=["can"])]},
            r"boxes\[0\]\.label: expected a string, got a list",
        ),
        (
            {"boxes": [_sample_box(score="0.5")]},
            r'boxes\[0\]\.score: expected a number, got "0\.5"',
        ),
        (
            {"boxes": [_sample_box(score=1.2)]},
            r"boxes\[0\]\.score: expected a score in \[0, 1\], got 1\.2",
        ),
        (
            {"boxes": [_sample_box(label="dog")]},
            r"boxes\[0\]\.label: 'dog' is not one of the classes",
        ),
    ],
)
def test_parse_names_the_element_and_key(element: Any, message: str) -> None:
    body = json.dumps([{"boxes": [_sample_box()]}, element], allow_nan=True)
    with pytest.raises(InvalidResponseError, match=message):
        parse_response(body, classes=CLASSES)


def test_parse_reports_the_first_problem_deep_in_a_large_response() -> None:
    response = [{"boxes": [_sample_box() for _ in range(5)]} for _ in range(300)]
    response[250]["boxes"][3]["box"].pop("bottomY")
    response[270]["boxes"][0]["score"] = "high"
    with pytest.raises(
        InvalidResponseError, match=r'^response\[250\]\.boxes\[3\]\.box: missing key "bottomY"$'
    ):
        parse_response(json.dumps(response))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"message": "upstream request timeout"}',
            r"keys \['message'\]: upstream request timeout",
        ),
        ('"not json inside"', "got a JSON string 'not json inside'"),
        ("42", "got 42"),
        ("<html>502 Bad Gateway</html>", "not valid JSON.*starts with '<html>"),
        (b"\xff\xfe\x00", "response: not"),
    ],
)
def test_parse_rejects_bodies_that_are_not_a_response(body: Any, message: str) -> None:
    with pytest.raises(InvalidResponseError, match=message):
        parse_response(body)


def test_classes_must_be_a_list_of_names() -> None:
    with pytest.raises(InvalidInputError, match="got the string 'can'"):
        parse_response("[]", classes="can")
    with pytest.raises(InvalidInputError, match="expected unique class names"):
        parse_response("[]", classes=["a", "a"])


# ----------------------------------------------------------------------- round trips
LABELS = st.sampled_from(["can", "carton", "milk_bottle", "water_bottle", "ünï", "a b"])
UNIT = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def boxes(draw: st.DrawFn) -> dict[str, Any]:
    x1, x2 = sorted((draw(UNIT), draw(UNIT)))
    y1, y2 = sorted((draw(UNIT), draw(UNIT)))
    return {
        "box": {"topX": x1, "topY": y1, "bottomX": x2, "bottomY": y2},
        "label": draw(LABELS),
        "score": draw(UNIT),
    }


RESPONSES = st.lists(st.fixed_dictionaries({"boxes": st.lists(boxes(), max_size=6)}), max_size=6)


@settings(max_examples=120, deadline=None)
@given(response=RESPONSES)
def test_parse_reads_every_value_back(response: list[dict[str, Any]]) -> None:
    preds = parse_response(json.dumps(response))
    assert len(preds) == len(response)
    for pred, element in zip(preds, response, strict=True):
        expected = [
            [b["box"]["topX"], b["box"]["topY"], b["box"]["bottomX"], b["box"]["bottomY"]]
            for b in element["boxes"]
        ]
        assert pred.detections.xyxy.tolist() == expected
        assert pred.labels.tolist() == [b["label"] for b in element["boxes"]]
        assert pred.scores.tolist() == [b["score"] for b in element["boxes"]]
        assert list(pred.classes) == sorted(pred.classes)
    assert format_response(preds) == response


@settings(max_examples=60, deadline=None)
@given(response=RESPONSES)
def test_format_then_parse_is_the_identity(response: list[dict[str, Any]]) -> None:
    classes = ("a b", "can", "carton", "milk_bottle", "water_bottle", "ünï", "unused")
    preds = parse_response(json.dumps(response), classes=classes)
    again = parse_response(json.dumps(format_response(preds)), classes=classes)
    assert again == preds
    assert format_response([p.detections for p in preds]) == format_response(preds)


JSON_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(
    response=RESPONSES.filter(lambda r: any(e["boxes"] for e in r)),
    where=st.data(),
    junk=JSON_JUNK,
)
def test_a_corrupted_value_is_reported_where_it_is(
    response: list[dict[str, Any]], where: st.DataObject, junk: Any
) -> None:
    """Whatever a value is replaced by, parsing succeeds or names the replaced element."""
    i = where.draw(st.sampled_from([k for k, e in enumerate(response) if e["boxes"]]))
    j = where.draw(st.integers(0, len(response[i]["boxes"]) - 1))
    key = where.draw(
        st.sampled_from(["topX", "topY", "bottomX", "bottomY", "label", "score", "box"])
    )
    entry = response[i]["boxes"][j]
    if key in entry:
        entry[key] = junk
    else:
        entry["box"][key] = junk
    body = json.dumps(response)
    try:
        preds = parse_response(body)
    except InvalidResponseError:
        with pytest.raises(InvalidResponseError, match=re.escape(f"response[{i}].boxes[{j}]")):
            parse_response(body)
    else:  # the junk happened to be valid there (a number in range, any string label)
        assert len(preds[i]) == len(response[i]["boxes"])


# ----------------------------------------------------------------------- batch output
def test_parse_batch_output_from_a_path_text_bytes_and_lines() -> None:
    path = FIXTURES / "batch_predictions.jsonl"
    text = path.read_text()
    expected = parse_batch_output(path)
    assert [p.image for p in expected] == [
        "/mnt/batch/inputs/odFridgeObjects/images/10.jpg",
        "/mnt/batch/inputs/odFridgeObjects/images/11.jpg",
        "/mnt/batch/inputs/odFridgeObjects/images/12.jpg",
    ]
    assert [len(p) for p in expected] == [3, 0, 1]
    assert expected[0].labels.tolist() == SAMPLE_LABELS
    for source in (
        str(path),
        text,
        text.encode(),
        text.splitlines(),
        [line.encode() for line in text.splitlines()],
    ):
        assert parse_batch_output(source) == expected


def test_parse_batch_output_sizes(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path, n_images=2, size=(40, 30))
    names = [Path(r.image).name for r in ds]
    lines = [json.dumps({"filename": f"/mnt/inputs/{n}", "boxes": []}) for n in names]
    by_root = parse_batch_output(lines, image_root=tmp_path / "images")
    assert [p.size for p in by_root] == [(40, 30), (40, 30)]
    by_map = parse_batch_output(lines, sizes={names[0]: (4, 3), f"/mnt/inputs/{names[1]}": (8, 6)})
    assert [p.size for p in by_map] == [(4, 3), (8, 6)]
    assert parse_batch_output(lines)[0].size is None
    with pytest.raises(NotFoundError):
        parse_batch_output(lines, image_root=tmp_path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("batch_bad_json.jsonl", r"^batch_bad_json\.jsonl line 2: not valid JSON"),
        (
            "batch_missing_filename.jsonl",
            r'^batch_missing_filename\.jsonl line 2: missing key "filename"$',
        ),
        (
            ['{"filename": 3, "boxes": []}'],
            r"^batch output line 1: filename: expected a string, got 3$",
        ),
        (["", "[1]"], r"^batch output line 2: expected an object \{\"filename\", \"boxes\"\}"),
        (
            ["", '{"filename": "a.jpg", "boxes": [{"box": {}, "label": "x", "score": 1}]}'],
            r'^batch output line 2: boxes\[0\]\.box: missing key "topX"$',
        ),
        (['{"filename": "a.jpg"}'], r'^batch output line 1: missing key "boxes"'),
    ],
)
def test_parse_batch_output_rejects(source: Any, message: str) -> None:
    if isinstance(source, str):
        source = FIXTURES / source
    with pytest.raises(InvalidResponseError, match=message):
        parse_batch_output(source)


def test_parse_batch_output_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="batch output file not found"):
        parse_batch_output(tmp_path / "predictions.csv")


# ----------------------------------------------------------------------- either file
def test_read_predictions_of_an_online_response() -> None:
    images = ["data/10.jpg", "data/11.jpg", "data/12.jpg"]
    sizes = [(499, 666), None, (499, 666)]
    preds = read_predictions(FIXTURES / "online_fridge.json", images=images, sizes=sizes)
    assert [(p.image, p.size, len(p)) for p in preds] == [
        ("data/10.jpg", (499, 666), 3),
        ("data/11.jpg", None, 0),
        ("data/12.jpg", (499, 666), 1),
    ]
    assert read_predictions(fixture_text("online_fridge.json").encode()) == parse_response(
        fixture_text("online_fridge.json")
    )


def test_read_predictions_matches_batch_file_names_to_images() -> None:
    images = ["local/12.jpg", "local/10.jpg", "other/99.jpg"]
    preds = read_predictions(
        FIXTURES / "batch_predictions.jsonl", images=images, sizes=[(1, 2), (3, 4), (5, 6)]
    )
    assert [(p.image, p.size, len(p)) for p in preds] == [
        ("local/10.jpg", (3, 4), 3),
        ("/mnt/batch/inputs/odFridgeObjects/images/11.jpg", None, 0),  # no local match
        ("local/12.jpg", (1, 2), 1),
    ]
    text = fixture_text("batch_predictions.jsonl")
    assert read_predictions(text) == parse_batch_output(text)
    ambiguous = read_predictions(text, images=["a/10.jpg", "b/10.jpg"])
    assert ambiguous[0].image == "/mnt/batch/inputs/odFridgeObjects/images/10.jpg"


def test_read_predictions_rejects(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="predictions file not found"):
        read_predictions(tmp_path / "nope.json")
    (tmp_path / "p.csv").write_text("filename,label\n")
    with pytest.raises(InvalidResponseError, match=r"p\.csv: expected an online response"):
        read_predictions(tmp_path / "p.csv")
    with pytest.raises(InvalidResponseError, match=r"^batch_bad_json\.jsonl line 2"):
        read_predictions(FIXTURES / "batch_bad_json.jsonl", images=["10.jpg"])
    with pytest.raises(InvalidInputError, match="sizes: expected 1"):
        read_predictions(FIXTURES / "batch_predictions.jsonl", images=["10.jpg"], sizes=[])


# ----------------------------------------------------------------------- ONNX
def test_parse_faster_rcnn_onnx_output() -> None:
    spec = json.loads(fixture_text("onnx_fasterrcnn.json"))
    pred = parse_onnx_output(
        np.array(spec["boxes"], dtype=np.float32),
        np.array(spec["labels"], dtype=np.int64),
        np.array(spec["scores"], dtype=np.float32),
        classes=spec["classes"],
        input_size=tuple(spec["input_size"]),
        image_size=tuple(spec["image_size"]),
        image="10.jpg",
    )
    assert (pred.image, pred.size) == ("10.jpg", (499, 666))
    assert pred.labels.tolist() == SAMPLE_LABELS
    np.testing.assert_allclose(pred.detections.xyxy, SAMPLE_XYXY, atol=1e-6)
    np.testing.assert_allclose(pred.scores, SAMPLE_SCORES, atol=1e-6)
    batched = parse_onnx_output(
        [spec["boxes"]], spec["labels"], spec["scores"], classes=spec["classes"]
    )
    assert (
        batched.detections
        == parse_onnx_output(
            spec["boxes"], spec["labels"], spec["scores"], classes=spec["classes"]
        ).detections
    )
    empty = parse_onnx_output(np.zeros((0, 4)), [], [], classes=spec["classes"])
    assert len(empty) == 0


@pytest.mark.parametrize(
    ("boxes", "labels", "scores", "message"),
    [
        ([[1, 2, 3]], [0], [0.5], r"boxes: expected shape \(n, 4\)"),
        ([[1, 2, 3, 4]], [0, 1], [0.5], r"labels: expected shape \(1,\)"),
        ([[1, 2, 3, 4]], [0], [0.5, 0.1], r"scores: expected shape \(1,\)"),
        ([[1, 2, 3, 4]], [4], [0.5], r"labels\[0\]: expected a class id in 0\.\.3"),
        ([[1, 2, 3, 4]], [0.5], [0.5], r"labels\[0\]: expected a class id"),
        ([[1, 2, np.nan, 4]], [0], [0.5], r"boxes\[0\]: expected finite numbers"),
        ([[1, 2, 3, 4]], [0], [np.inf], r"scores\[0\]: expected finite numbers"),
        ([[30, 2, 3, 4]], [0], [0.5], r"boxes\[0\]: expected x_min <= x_max"),
    ],
)
def test_parse_onnx_output_rejects(boxes: Any, labels: Any, scores: Any, message: str) -> None:
    with pytest.raises(InvalidResponseError, match=message):
        parse_onnx_output(boxes, labels, scores, classes=CLASSES)


def test_parse_yolo_onnx_output_undoes_the_letterbox() -> None:
    spec = json.loads(fixture_text("onnx_yolo.json"))
    pred = parse_yolo_onnx_output(
        np.array(spec["output"], dtype=np.float32)[None],
        classes=spec["classes"],
        image_size=tuple(spec["image_size"]),
        input_size=tuple(spec["input_size"]),
    )
    assert pred.size == (499, 666)
    assert pred.labels.tolist() == SAMPLE_LABELS
    np.testing.assert_allclose(pred.detections.xyxy, SAMPLE_XYXY, atol=1e-6)
    none = parse_yolo_onnx_output(None, classes=CLASSES, image_size=(499, 666))
    assert len(none) == 0
    assert none.size == (499, 666)


@pytest.mark.parametrize(
    ("image_size", "scaleup", "left", "top", "new_w", "new_h"),
    [
        ((499, 666), False, 80, 0, 480, 640),  # portrait, shrunk to fit the height
        ((1280, 720), False, 0, 140, 640, 360),  # landscape, shrunk to fit the width
        ((320, 240), False, 160, 200, 320, 240),  # small: centred, never enlarged
        ((320, 240), True, 0, 80, 640, 480),  # small, enlarged with scaleup
        ((641, 300), False, 0, 170, 640, 300),  # odd padding: 340 split 170 / 170
    ],
)
def test_yolo_letterbox_math(
    image_size: tuple[int, int], scaleup: bool, left: int, top: int, new_w: int, new_h: int
) -> None:
    norm = np.array([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]])
    px = norm * [new_w, new_h, new_w, new_h] + [left, top, left, top]
    rows = np.column_stack([px, [0.9, 0.4], [1, 0]])
    pred = parse_yolo_onnx_output(rows, classes=CLASSES, image_size=image_size, scaleup=scaleup)
    np.testing.assert_allclose(pred.detections.xyxy, norm, atol=1e-12)
    assert pred.labels.tolist() == ["carton", "can"]


def test_yolo_without_letterbox_and_errors() -> None:
    rows = [[64.0, 32.0, 320.0, 640.0, 0.8, 2.0]]
    pred = parse_yolo_onnx_output(rows, classes=CLASSES, image_size=(100, 50), letterbox=False)
    assert pred.detections.xyxy.tolist() == [[0.1, 0.05, 0.5, 1.0]]
    with pytest.raises(InvalidResponseError, match=r"output: expected shape \(n, 6\)"):
        parse_yolo_onnx_output([[1, 2, 3, 4, 5]], classes=CLASSES, image_size=(10, 10))
    with pytest.raises(InvalidResponseError, match=r"class_id\)\[0\]: expected a class id"):
        parse_yolo_onnx_output([[1, 2, 3, 4, 0.5, 1.5]], classes=CLASSES, image_size=(10, 10))
    with pytest.raises(InvalidInputError, match=r"image_size: expected \(width, height\) > 0"):
        parse_yolo_onnx_output(rows, classes=CLASSES, image_size=(0, 10))


# ----------------------------------------------------------------------- imports
def test_parsing_imports_nothing_heavy() -> None:
    code = (
        "import sys, detectkit.scoring as s\n"
        "s.parse_response('[{\"boxes\": []}]')\n"
        "heavy = {'PIL', 'pandas', 'supervision', 'matplotlib', 'azure', 'mlflow', 'torch'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names() -> None:
    import detectkit

    assert detectkit.parse_response is parse_response
    assert detectkit.parse_batch_output is parse_batch_output
    assert detectkit.build_request is build_request
    assert detectkit.Detections is Detections
    assert detectkit.Prediction is Prediction
