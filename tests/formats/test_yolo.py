"""YOLO: layouts, class files, label lines and their problems, the writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

import detectkit
from detectkit import (
    Box,
    ImageRecord,
    InvalidAnnotationError,
    InvalidInputError,
    LabeledDataset,
    NotFoundError,
    ObjectAnnotation,
    ProblemKind,
    Severity,
)
from detectkit.formats.yolo import data_yaml_text, parse_data_yaml, read_yolo, write_yolo
from detectkit.synthetic import make_dataset


def _image(path: Path, size: tuple[int, int] = (64, 48), orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, (120, 30, 30))
    if orientation is None:
        im.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(path, exif=exif.tobytes())
    return path


def _label(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _folder(root: Path, labels: dict[str, str], names: str = "names: [ace, king]\n") -> Path:
    """A YOLO folder: one image per entry of ``labels`` (``"a"`` -> images/a.png)."""
    for stem, text in labels.items():
        _image(root / "images" / f"{stem}.png")
        _label(root / "labels" / f"{stem}.txt", text)
    (root / "data.yaml").write_text(names, encoding="utf-8")
    return root


# ---------------------------------------------------------------------------- class names
@pytest.mark.parametrize(
    ("text", "names", "nc"),
    [
        ("names: [ace, king]\n", ["ace", "king"], None),
        ("nc: 2\nnames: ['ace', \"king of hearts\"]  # two\n", ["ace", "king of hearts"], 2),
        ("names: [\n  'ace',\n  'king',\n]\n", ["ace", "king"], None),
        ("names:\n  - ace\n  - 'jack # not a comment'\n", ["ace", "jack # not a comment"], None),
        ("names:\n- ace\n- king\ntrain: images\n", ["ace", "king"], None),
        ("path: ../d\nnames:\n  0: ace\n  1: king\nval: images/val\n", ["ace", "king"], None),
        ("names:\n  1: king\n  0: ace\n", ["ace", "king"], None),
        ("names: {0: ace, 1: 'k: q'}\n", ["ace", "k: q"], None),
        ('names:\n  - "caf\\u00e9"\n  - "no"\n', ["café", "no"], None),
        ("train: images\n", None, None),
        ("names: []\n", [], None),
    ],
)
def test_data_yaml_shapes(text: str, names: list[str] | None, nc: int | None) -> None:
    assert parse_data_yaml(text) == (names, nc)
    if names is not None:  # the same meaning as a real YAML parser
        assert yaml.safe_load(text)["names"] in (names, dict(enumerate(names)))


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("names: ace\n", 1, "expected a list or a mapping"),
        ("a: 1\nnames: [ace, king\n", 2, "never closed"),
        ("names:\n  0: ace\n  2: king\n", 2, "class ids must be 0..1"),
        ("names:\n  - [a, b]\n", 2, "expected a class name"),
        ("names:\n  zero: ace\n", 2, "expected 'id: name'"),
        ("names:\n", 1, "names is empty"),
    ],
)
def test_data_yaml_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_data_yaml(text)
    assert getattr(info.value, "line", None) == line


# Names built from YAML's troublemakers (quotes, escapes, comment and flow markers) and from
# arbitrary text, so the quoting of the writer and the scanner of the parser meet them often.
_FRAGMENTS = ['"', "'", " #", "#", ", ", ": ", "[", "]", "{", "}", "- ", "\\", "no", "0", " "]
_names = st.lists(
    st.lists(
        st.one_of(
            st.sampled_from(_FRAGMENTS),
            st.text(
                st.characters(
                    blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"
                ),
                min_size=1,
                max_size=3,
            ),
        ),
        min_size=1,
        max_size=6,
    )
    .map("".join)
    .filter(lambda s: s == s.strip() and s != ""),
    max_size=6,
    unique=True,
)


@settings(max_examples=150, deadline=None)
@given(_names)
@example(['a" #b', "it's #1", "x, y", "a\\", "- z", "no", "#"])
def test_written_data_yaml_reads_back_here_and_in_pyyaml(names: list[str]) -> None:
    text = data_yaml_text(tuple(names), Path("/data/set"))
    assert parse_data_yaml(text) == (names, len(names))
    loaded = yaml.safe_load(text)
    assert loaded["names"] == names
    assert loaded["nc"] == len(names)
    assert (loaded["train"], loaded["val"], loaded["path"]) == ("images", "images", "/data/set")


def test_class_files_in_order_of_preference(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": "1 0.5 0.5 0.2 0.2\n"}, names="names: [from_yaml, y2]\n")
    (root / "classes.txt").write_text("from_txt\nt2\n", encoding="utf-8")
    assert read_yolo(root)[0].classes == ("from_yaml", "y2")
    assert read_yolo(root / "classes.txt")[0].classes == ("from_txt", "t2")
    (root / "data.yaml").unlink()
    (root / "cards.yaml").write_text("names:\n  0: other\n  1: o2\n", encoding="utf-8")
    assert read_yolo(root)[0].classes == ("other", "o2")
    (root / "cards.yaml").unlink()
    assert read_yolo(root)[0].classes == ("from_txt", "t2")
    (root / "classes.txt").rename(root / "labels" / "classes.txt")  # LabelImg keeps it there
    ds, report = read_yolo(root)
    assert ds.classes == ("from_txt", "t2")
    assert ds[0].objects[0].label == "t2"
    assert report.ok
    assert not report.problems  # labels/classes.txt is not a stray label file


def test_without_class_names_classes_are_ids_with_a_warning(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": "2 0.5 0.5 0.2 0.2\n"}, names="train: images\n")
    ds, report = read_yolo(root)
    assert ds.classes == ("0", "1", "2")
    assert ds[0].objects[0].label == "2"
    assert [(p.kind, p.severity) for p in report.problems] == [
        (ProblemKind.MISSING_FIELD, Severity.WARNING)
    ]


def test_broken_data_yaml_is_a_parse_problem(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": ""}, names="names: [ace,\n")
    with pytest.raises(InvalidAnnotationError, match=r"data\.yaml, line 1: names: .*never closed"):
        read_yolo(root)
    (root / "classes.txt").write_text("ace\n", encoding="utf-8")
    ds, report = read_yolo(root, errors="collect")
    assert ds.classes == ("ace",)  # falls back to classes.txt
    assert [p.kind for p in report.errors] == [ProblemKind.PARSE]


# ---------------------------------------------------------------------------- label lines
def test_reads_boxes_sizes_and_images_without_labels(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": "0 0.5 0.5 0.2 0.4\n\n1 0.25 0.75 0.5 0.5\n", "b": ""})
    _image(root / "images" / "c.png", size=(10, 20))  # no label file: an image without boxes
    ds, report = read_yolo(root)
    assert [r.name for r in ds] == ["a.png", "b.png", "c.png"]
    assert [len(r.objects) for r in ds] == [2, 0, 0]
    assert [(r.width, r.height, r.format) for r in ds] == [(64, 48, "png")] * 2 + [(10, 20, "png")]
    first, second = ds[0].objects
    assert (first.label, second.label) == ("ace", "king")
    assert first.box.to_array().tolist() == pytest.approx([0.4, 0.3, 0.6, 0.7], abs=1e-15)
    assert second.box.to_array().tolist() == pytest.approx([0.0, 0.5, 0.5, 1.0], abs=1e-15)
    assert ds.root == root.resolve()
    assert report.ok
    assert not report.problems
    assert detectkit.detect_format(root) == "yolo"


def test_image_sizes_honour_exif_orientation(tmp_path: Path) -> None:
    """supervision#2577: sizes from the header without EXIF placed YOLO boxes wrongly."""
    root = _folder(tmp_path, {})
    _image(root / "images" / "photo.jpg", size=(40, 20), orientation=6)
    ds, _ = read_yolo(root)
    assert (ds[0].width, ds[0].height) == (20, 40)


@pytest.mark.parametrize(
    ("line", "kind", "field"),
    [
        ("5 0.5 0.5 0.2 0.2", ProblemKind.UNKNOWN_LABEL, "class_id"),
        ("x 0.5 0.5 0.2 0.2", ProblemKind.BAD_VALUE, "class_id"),
        ("-1 0.5 0.5 0.2 0.2", ProblemKind.BAD_VALUE, "class_id"),
        ("0.5 0.5 0.5 0.2 0.2", ProblemKind.BAD_VALUE, "class_id"),
        ("0 0.5 0.5 0.2", ProblemKind.BAD_VALUE, None),
        ("0 0.1 0.2 0.3 0.4 0.5 0.6 0.7", ProblemKind.BAD_VALUE, None),
        ("0 0.5 1.5 0.2 0.2", ProblemKind.OUT_OF_RANGE, "cy"),
        ("0 0.5 0.5 -0.2 0.2", ProblemKind.OUT_OF_RANGE, "w"),
        ("0 0.5 0.5 0.2 nan", ProblemKind.BAD_VALUE, "h"),
        ("0 320 240 64 48", ProblemKind.OUT_OF_RANGE, "cx"),
        ("0 0.5 0.5 0.2 0.2 1.7", ProblemKind.OUT_OF_RANGE, "score"),
        ("0 0.1 0.1 0.9 0.1 2.5 0.9", ProblemKind.OUT_OF_RANGE, "x3"),
    ],
)
def test_bad_line_is_reported_with_file_line_and_field(
    tmp_path: Path, line: str, kind: ProblemKind, field: str | None
) -> None:
    root = _folder(
        tmp_path,
        {"a": f"0 0.5 0.5 0.2 0.2\n{line}\n1 0.5 0.5 0.1 0.1\n", "b": "1 0.5 0.5 0.2 0.2\n"},
    )
    ds, report = read_yolo(root, errors="collect")
    assert [len(r.objects) for r in ds] == [2, 1]  # the good lines and files are kept
    (problem,) = report.errors
    assert (problem.kind, problem.field) == (kind, field)
    assert problem.file == str(root / "labels" / "a.txt")
    assert problem.location == "line 2"
    with pytest.raises(InvalidAnnotationError, match=r"a\.txt, line 2"):
        read_yolo(root)


def test_values_a_hair_outside_are_clipped_with_a_warning(tmp_path: Path) -> None:
    """label-studio#5014: 1.0004 made Ultralytics drop the image as corrupt."""
    root = _folder(tmp_path, {"a": "0 0.5 1.0004 0.2 0.2\n0 0.5 0.5 1.0000000000001 0.2\n"})
    ds, report = read_yolo(root)
    assert ds[0].objects[0].box.to_array().tolist() == pytest.approx([0.4, 0.9, 0.6, 1.0])
    assert ds[0].objects[1].box.to_array().tolist() == pytest.approx([0.0, 0.4, 1.0, 0.6])
    problems = [(p.kind, p.severity, p.field, p.location) for p in report.problems]
    assert problems == [
        (ProblemKind.CLIPPED, Severity.WARNING, "cy", "line 1"),  # 1.0004 -> 1
        (ProblemKind.CLIPPED, Severity.WARNING, "cx cy w h", "line 1"),  # box past the bottom edge
    ]  # 1 + 1e-13 is float noise: clipped silently


def test_box_past_the_edge_is_clipped_to_the_image(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": "0 0.05 0.5 0.2 0.2\n"})
    ds, report = read_yolo(root)
    assert ds[0].objects[0].box.to_array().tolist() == pytest.approx([0.0, 0.4, 0.15, 0.6])
    assert [(p.kind, p.severity) for p in report.problems] == [
        (ProblemKind.CLIPPED, Severity.WARNING)
    ]


def test_polygon_lines_become_their_bounding_box_with_one_warning(tmp_path: Path) -> None:
    polygon = "0 0.1 0.2 0.5 0.1 0.6 0.7 0.2 0.6"
    root = _folder(tmp_path, {"a": f"{polygon}\n{polygon}\n1 0.5 0.5 0.2 0.2\n"})
    ds, report = read_yolo(root)
    assert [o.box.to_array().tolist() for o in ds[0].objects[:2]] == [[0.1, 0.1, 0.6, 0.7]] * 2
    (warning,) = report.problems
    assert warning.severity is Severity.WARNING
    assert warning.location == "line 1"
    assert warning.message.startswith("2 segment polygon line(s)")


def test_sixth_value_is_a_score(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": "1 0.5 0.5 0.2 0.2 0.875\n"})
    ds, _ = read_yolo(root)
    assert (ds[0].objects[0].label, ds[0].objects[0].score) == ("king", 0.875)


def test_label_file_without_image_is_unreferenced(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    stray = _label(root / "labels" / "gone.txt", "0 0.5 0.5 0.2 0.2\n")
    ds, report = read_yolo(root, errors="collect")
    assert len(ds) == 1
    (problem,) = report.errors
    assert (problem.kind, problem.file) == (ProblemKind.UNREFERENCED, str(stray))
    with pytest.raises(InvalidAnnotationError, match="label file has no image"):
        read_yolo(root)


def test_unreadable_image_is_an_error_and_not_a_record(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    _label(root / "labels" / "broken.txt", "")
    ds, report = read_yolo(root, errors="collect")
    assert [r.name for r in ds] == ["a.png"]
    assert [(p.kind, p.file) for p in report.errors] == [
        (ProblemKind.UNREADABLE_IMAGE, str(root / "images" / "broken.jpg"))
    ]


# ---------------------------------------------------------------------------- layouts
def test_split_subfolders_are_all_read(tmp_path: Path) -> None:
    for split, stem in (("train", "t1"), ("train", "t2"), ("val", "v1")):
        _image(tmp_path / "images" / split / f"{stem}.jpg")
        _label(tmp_path / "labels" / split / f"{stem}.txt", "1 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: ace\n  1: king\n",
        encoding="utf-8",
    )
    ds, report = read_yolo(tmp_path)
    assert [Path(r.image).relative_to(tmp_path.resolve()).as_posix() for r in ds] == [
        "images/train/t1.jpg",
        "images/train/t2.jpg",
        "images/val/v1.jpg",
    ]
    assert all(r.objects[0].label == "king" for r in ds)
    assert not report.problems


def test_roboflow_layout_split_folders_first(tmp_path: Path) -> None:
    for split in ("train", "valid"):
        _image(tmp_path / split / "images" / "a.jpg")
        _label(tmp_path / split / "labels" / "a.txt", "0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "README.roboflow.txt").write_text("exported\n", encoding="utf-8")
    (tmp_path / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['ace']\n", encoding="utf-8"
    )
    ds, report = read_yolo(tmp_path)
    assert [Path(r.image).relative_to(tmp_path.resolve()).as_posix() for r in ds] == [
        "train/images/a.jpg",
        "valid/images/a.jpg",
    ]
    assert [len(r.objects) for r in ds] == [1, 1]
    assert not report.problems  # the README is not a stray label file


def test_flat_layout_images_and_labels_side_by_side(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg")
    _label(tmp_path / "a.txt", "0 0.5 0.5 0.2 0.2\n")
    _image(tmp_path / "b.jpg")
    (tmp_path / "classes.txt").write_text("ace\n", encoding="utf-8")
    ds, report = read_yolo(tmp_path)
    assert [len(r.objects) for r in ds] == [1, 0]
    assert not report.problems


def test_missing_labels_folder_is_a_warning(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "a.png")
    ds, report = read_yolo(tmp_path)
    assert len(ds) == 1
    assert [p.kind for p in report.warnings] == [ProblemKind.MISSING_FIELD] * 2  # labels/, names


def test_no_images_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        read_yolo(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    with pytest.raises(NotFoundError, match="no images found"):
        read_yolo(tmp_path)


# ---------------------------------------------------------------------------- writer
def test_write_read_round_trip_is_exact(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "cards", n_images=5, seed=3, min_objects=0)
    before = [r.model_copy(deep=True) for r in ds]
    out = write_yolo(ds, tmp_path / "yolo")
    assert list(ds) == before  # the caller's data set is not touched
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "data.yaml", "images", "labels"]
    back, report = read_yolo(out)
    assert back.classes == ds.classes
    assert not report.problems
    for a, b in zip(ds, back, strict=True):
        assert b.name == a.name
        assert (b.width, b.height) == (a.width, a.height)
        assert [o.label for o in b.objects] == [o.label for o in a.objects]
        for oa, ob in zip(a.objects, b.objects, strict=True):
            assert ob.box.to_array() == pytest.approx(oa.box.to_array(), abs=1e-12, rel=0)
    assert (out / "classes.txt").read_text(encoding="utf-8") == "".join(
        f"{c}\n" for c in ds.classes
    )
    assert yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))["names"] == list(
        ds.classes
    )


def test_images_are_hard_linked_and_rewriting_in_place_works(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "cards", n_images=2, seed=3)
    out = write_yolo(ds, tmp_path / "yolo")
    assert os.path.samefile(out / "images" / "img_0000.png", ds[0].image)
    back, _ = read_yolo(out)
    write_yolo(back, out)  # images already there: kept, not deleted
    assert read_yolo(out)[0] == back


def test_labels_are_written_at_full_precision(tmp_path: Path) -> None:
    box = Box(top_x=0.1, top_y=1 / 3, bottom_x=0.7, bottom_y=2 / 3)
    _image(tmp_path / "a.png")
    ds = LabeledDataset(
        [
            ImageRecord(
                image=str(tmp_path / "a.png"), objects=(ObjectAnnotation(label="b", box=box),)
            )
        ],
        ["a", "b"],
    )
    out = write_yolo(ds, tmp_path / "yolo")
    cx, cy, w, h = box.to_cxcywh()
    assert (out / "labels" / "a.txt").read_text(
        encoding="utf-8"
    ) == f"1 {cx!r} {cy!r} {w!r} {h!r}\n"


def test_crowd_boxes_are_written_as_normal_boxes_and_scores_dropped(tmp_path: Path) -> None:
    box = Box(top_x=0.1, top_y=0.1, bottom_x=0.5, bottom_y=0.5)
    _image(tmp_path / "a.png")
    objects = (ObjectAnnotation(label="a", box=box, is_crowd=True, score=0.5),)
    out = write_yolo(
        LabeledDataset([ImageRecord(image=str(tmp_path / "a.png"), objects=objects)]),
        tmp_path / "y",
    )
    (obj,) = read_yolo(out)[0][0].objects
    assert (obj.label, obj.is_crowd, obj.score) == ("a", False, None)


def test_duplicate_stems_are_renamed(tmp_path: Path) -> None:
    records = [
        ImageRecord(image=str(_image(tmp_path / "a" / "x.png"))),
        ImageRecord(image=str(_image(tmp_path / "b" / "x.png"))),
        ImageRecord(image=str(_image(tmp_path / "b" / "x.jpg"))),
    ]
    out = write_yolo(LabeledDataset(records), tmp_path / "yolo")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["x.png", "x_2.png", "x_3.jpg"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["x.txt", "x_2.txt", "x_3.txt"]


@pytest.mark.parametrize(
    ("record", "classes", "error", "message"),
    [
        (ImageRecord(image="https://x/a.png"), ["a"], InvalidInputError, "got a URL"),
        (ImageRecord(image="/nonexistent/a.png"), ["a"], NotFoundError, "image file not found"),
        (None, ["a", "b\nc"], InvalidInputError, "line breaks"),
        (None, [" a"], InvalidInputError, "surrounding spaces"),
        ("unknown-label", ["a"], InvalidInputError, r"labels \['z'\] are not in the class list"),
    ],
)
def test_writer_refuses_what_yolo_cannot_hold(
    tmp_path: Path,
    record: ImageRecord | str | None,
    classes: list[str],
    error: type[Exception],
    message: str,
) -> None:
    image = str(_image(tmp_path / "a.png"))
    if not isinstance(record, ImageRecord):
        box = Box(top_x=0.1, top_y=0.1, bottom_x=0.5, bottom_y=0.5)
        label = "z" if record == "unknown-label" else classes[0]
        record = ImageRecord(image=image, objects=(ObjectAnnotation(label=label, box=box),))
    with pytest.raises(error, match=message):
        write_yolo(LabeledDataset([record], classes), tmp_path / "yolo")
    assert not (tmp_path / "yolo").exists()  # checked before anything is written
