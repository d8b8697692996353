"""Pascal VOC: the 1-based inclusive convention, safe XML, per-file problems, the writer."""

from __future__ import annotations

from pathlib import Path

import pytest
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
from detectkit.formats.voc import read_voc, to_pixel_index, write_voc
from detectkit.synthetic import make_dataset


def _obj(
    name: str = "ace",
    box: tuple[object, object, object, object] = (11, 21, 40, 60),
    difficult: str = "0",
) -> str:
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
        f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"
        "</bndbox></object>"
    )


def _xml(*objects: str, filename: str = "a.jpg", size: tuple[int, int] | None = (100, 80)) -> str:
    size_xml = (
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        if size
        else ""
    )
    return f"<annotation><filename>{filename}</filename>{size_xml}{''.join(objects)}</annotation>"


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _bndboxes(path: Path) -> list[tuple[str, ...]]:
    """The raw <bndbox> texts of a VOC file, in order."""
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    return [
        tuple(obj.findtext(f"bndbox/{k}") or "" for k in ("xmin", "ymin", "xmax", "ymax"))
        for obj in root.iter("object")
    ]


# ---------------------------------------------------------------------------- convention
@pytest.mark.parametrize(
    ("bndbox", "size", "expected"),
    [
        # the whole image: first pixel 1, last pixel width
        ((1, 1, 100, 80), (100, 80), (0.0, 0.0, 1.0, 1.0)),
        # one pixel: xmin == xmax covers one column, [xmin - 1, xmax]
        ((5, 7, 5, 7), (100, 80), (0.04, 6 / 80, 0.05, 7 / 80)),
        ((11, 21, 40, 60), (100, 80), (0.10, 0.25, 0.40, 0.75)),
        # float coordinates are accepted (supervision#2568)
        ((48.5, 10, 60.5, 20), (100, 80), (0.475, 9 / 80, 0.605, 0.25)),
    ],
)
def test_read_uses_one_based_inclusive_pixels(
    tmp_path: Path,
    bndbox: tuple[float, ...],
    size: tuple[int, int],
    expected: tuple[float, ...],
) -> None:
    _write(tmp_path, "a.xml", _xml(_obj(box=bndbox), size=size))
    ds, report = read_voc(tmp_path)
    box = ds[0].objects[0].box
    assert box.to_array().tolist() == pytest.approx(expected, abs=1e-12)
    assert (ds[0].width, ds[0].height) == size
    assert report.ok
    assert not report.warnings


def test_zero_based_files_are_read_with_origin_0(tmp_path: Path) -> None:
    # a 0-based tool's box of the first ten columns and rows: xmin 0, xmax 10
    _write(tmp_path, "a.xml", _xml(_obj(box=(0, 0, 10, 10)), _obj(box=(25, 20, 50, 40))))
    ds, report = read_voc(tmp_path, errors="collect")
    assert [w.kind for w in report.warnings] == ["clipped", "clipped"]  # 1-based: one out
    assert ds[0].objects[1].box.to_array().tolist() == pytest.approx([0.24, 0.2375, 0.5, 0.5])
    ds0, report0 = read_voc(tmp_path, origin=0, errors="collect")
    assert report0.ok and not report0.warnings
    boxes = [o.box.to_array().tolist() for o in ds0[0].objects]
    assert boxes[0] == pytest.approx([0.0, 0.0, 0.1, 0.125])
    assert boxes[1] == pytest.approx([0.25, 0.25, 0.5, 0.5])  # xmin / width, as Azure's converter
    with pytest.raises(InvalidInputError, match="origin: expected 0 or 1"):
        read_voc(tmp_path, origin=2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("x1", "x2", "xmin", "xmax"),
    [
        (0.0, 100.0, 1, 100),  # whole width
        (10.0, 40.0, 11, 40),
        (47.5, 60.5, 49, 61),  # halves round up
        (47.49, 60.49, 48, 60),
        (47.4999999999, 47.5000000001, 49, 48),  # float noise around a half snaps to it
        (12.0, 12.0, 13, 12),  # zero width: xmax = xmin - 1, read back as zero width
    ],
)
def test_write_rounds_continuous_corners_to_one_based_indices(
    tmp_path: Path, x1: float, x2: float, xmin: int, xmax: int
) -> None:
    assert to_pixel_index(x1) + 1 == xmin
    assert to_pixel_index(x2) == xmax
    box = Box.from_xyxy(x1, 0, x2, 10, width=100, height=80)
    ds = LabeledDataset(
        [
            ImageRecord(
                image=str(tmp_path / "a.png"),
                width=100,
                height=80,
                objects=(ObjectAnnotation(label="a", box=box),),
            )
        ]
    )
    out = write_voc(ds, tmp_path / "voc")
    assert _bndboxes(out / "a.xml") == [(str(xmin), "1", str(xmax), "10")]


def test_integer_boxes_survive_read_write_read_to_the_pixel(tmp_path: Path) -> None:
    objects = [
        _obj("ace", (1, 1, 100, 80)),
        _obj("king", (3, 4, 3, 4)),
        _obj("ten", (17, 29, 58, 77)),
    ]
    src = _write(tmp_path / "src", "a.xml", _xml(*objects))
    ds, _ = read_voc(src.parent)
    out = write_voc(ds, tmp_path / "out")
    assert _bndboxes(out / "a.xml") == _bndboxes(src)
    again, _ = read_voc(out, images_root=src.parent)
    assert again == ds


def test_write_does_not_change_the_data_set_and_is_repeatable(tmp_path: Path) -> None:
    """supervision#2341: an export shifted the caller's boxes by +1 px, more on each export."""
    ds = make_dataset(tmp_path / "cards", n_images=3, seed=4)
    before = [r.model_copy(deep=True) for r in ds]
    first = write_voc(ds, tmp_path / "one")
    second = write_voc(ds, tmp_path / "two")
    assert list(ds) == before
    for xml in sorted(first.glob("*.xml")):
        assert _bndboxes(xml) == _bndboxes(second / xml.name)
    back, _ = read_voc(second, images_root=tmp_path / "cards")
    for a, b in zip(ds, back, strict=True):
        for oa, ob in zip(a.objects, b.objects, strict=True):
            assert ob.box.to_array() == pytest.approx(oa.box.to_array(), abs=1e-12)


# ---------------------------------------------------------------------------- fields
def test_difficult_is_crowd_by_default_or_a_normal_object(tmp_path: Path) -> None:
    _write(tmp_path, "a.xml", _xml(_obj(difficult="1"), _obj(difficult="0")))
    crowd, _ = read_voc(tmp_path)
    assert [o.is_crowd for o in crowd[0].objects] == [True, False]
    plain, _ = read_voc(tmp_path, difficult="object")
    assert [o.is_crowd for o in plain[0].objects] == [False, False]
    with pytest.raises(InvalidInputError, match="difficult"):
        read_voc(tmp_path, difficult="ignore")  # type: ignore[arg-type]


def test_crowd_is_written_as_difficult(tmp_path: Path) -> None:
    box = Box(top_x=0.1, top_y=0.1, bottom_x=0.5, bottom_y=0.5)
    record = ImageRecord(
        image=str(tmp_path / "a.png"),
        width=10,
        height=10,
        objects=(ObjectAnnotation(label="x", box=box, is_crowd=True, score=0.7),),
    )
    out = write_voc(LabeledDataset([record]), tmp_path / "voc")
    text = (out / "a.xml").read_text(encoding="utf-8")
    assert "<difficult>1</difficult>" in text
    assert "0.7" not in text  # VOC has no score
    back, _ = read_voc(out)
    assert back[0].objects[0].is_crowd


def test_classes_are_sorted_labels_and_xml_files_are_records(tmp_path: Path) -> None:
    _write(tmp_path, "b.xml", _xml(_obj("queen"), filename="b.jpg"))
    _write(tmp_path, "a.xml", _xml(_obj("ace"), _obj("king"), filename="a.jpg"))
    _write(tmp_path, "c.xml", _xml(filename="c.jpg"))  # an image without boxes
    Image.new("RGB", (4, 4)).save(tmp_path / "orphan.jpg")  # no XML: not a record
    ds, _ = read_voc(tmp_path)
    assert ds.classes == ("ace", "king", "queen")
    assert [r.name for r in ds] == ["a.jpg", "b.jpg", "c.jpg"]
    assert [len(r.objects) for r in ds] == [2, 1, 0]
    assert ds.root == tmp_path.resolve()


def test_missing_size_is_read_from_the_exif_rotated_image(tmp_path: Path) -> None:
    """supervision#2577: the size that matters is the displayed (rotated) one."""
    im = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: displayed 20 x 40
    im.save(tmp_path / "a.jpg", exif=exif.tobytes())
    _write(tmp_path, "a.xml", _xml(_obj(box=(1, 1, 20, 40)), size=None))
    _write(tmp_path, "b.xml", _xml(filename="a.jpg", size=(0, 0)))
    ds, report = read_voc(tmp_path)
    assert [(r.width, r.height) for r in ds] == [(20, 40), (20, 40)]
    assert ds[0].objects[0].box.to_array().tolist() == [0.0, 0.0, 1.0, 1.0]
    assert report.ok


def test_image_found_from_filename_when_path_is_an_annotators_absolute_path(tmp_path: Path) -> None:
    Image.new("RGB", (100, 80)).save(tmp_path / "IMG_1.JPG")
    text = _xml(_obj(), filename="IMG_1.JPG").replace(
        "<filename>", r"<path>C:\tensorflow_cards\train\IMG_1.JPG</path><filename>"
    )
    _write(tmp_path, "IMG_1.xml", text)
    _write(tmp_path, "IMG_2.xml", text.replace("<filename>IMG_1.JPG</filename>", ""))
    ds, report = read_voc(tmp_path)
    assert [r.image for r in ds] == [str((tmp_path / "IMG_1.JPG").resolve())] * 2
    assert report.ok


def test_voc_layout_reads_images_from_jpegimages(tmp_path: Path) -> None:
    Image.new("RGB", (100, 80)).save(_jpeg_dir(tmp_path) / "a.jpg")
    _write(tmp_path / "Annotations", "a.xml", _xml(_obj()))
    for path in (tmp_path, tmp_path / "Annotations", tmp_path / "Annotations" / "a.xml"):
        ds, _ = read_voc(path)
        assert ds[0].image == str((tmp_path / "JPEGImages" / "a.jpg").resolve())
    assert detectkit.detect_format(tmp_path) == "voc"
    assert len(detectkit.read_dataset(tmp_path)) == 1


def _jpeg_dir(root: Path) -> Path:
    (root / "JPEGImages").mkdir(parents=True)
    return root / "JPEGImages"


# ---------------------------------------------------------------------------- problems
@pytest.mark.parametrize(
    ("obj", "kind", "field"),
    [
        (_obj(box=("4x", 21, 40, 60)), ProblemKind.BAD_VALUE, "bndbox/xmin"),
        (_obj(box=("", 21, 40, 60)), ProblemKind.MISSING_FIELD, "bndbox/xmin"),
        ("<object><name>ace</name></object>", ProblemKind.MISSING_FIELD, "bndbox/xmin"),
        (_obj(name=""), ProblemKind.MISSING_FIELD, "name"),
        (_obj(box=(50, 21, 40, 60)), ProblemKind.INVERTED_BOX, "bndbox/xmax"),
        (_obj(box=(11, 21, 40, 95)), ProblemKind.OUT_OF_RANGE, "bndbox/ymax"),
        (_obj(box=(-5, 21, 40, 60)), ProblemKind.OUT_OF_RANGE, "bndbox/xmin"),
    ],
)
def test_bad_object_is_reported_with_file_object_and_field(
    tmp_path: Path, obj: str, kind: ProblemKind, field: str
) -> None:
    bad = _write(tmp_path, "a.xml", _xml(_obj("king"), obj))
    _write(tmp_path, "b.xml", _xml(_obj("queen"), filename="b.jpg"))
    ds, report = read_voc(tmp_path, errors="collect")
    assert [len(r.objects) for r in ds] == [1, 1]  # the good objects and files are kept
    (problem,) = report.errors
    assert problem.kind is kind
    assert problem.file == str(bad)
    assert problem.field == field
    assert problem.location is not None
    assert problem.location.startswith("<object> #2 (line ")
    with pytest.raises(InvalidAnnotationError) as info:
        read_voc(tmp_path)
    assert str(bad) in str(info.value)
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("<annotation><filename>a.jpg</filename", "not well-formed"),
        ("<annotation>&ent;</annotation>", "undefined entity"),
        ("<root/>", "<annotation>"),
        (  # billion laughs: refused before any expansion
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            "<annotation><filename>&lol2;</filename></annotation>",
            "DOCTYPE",
        ),
        (  # external entity: never fetched
            '<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            "<annotation><filename>&xxe;</filename></annotation>",
            "DOCTYPE",
        ),
    ],
)
def test_unsafe_or_broken_xml_is_one_parse_problem(tmp_path: Path, text: str, needle: str) -> None:
    bad = _write(tmp_path, "a.xml", text)
    _write(tmp_path, "b.xml", _xml(_obj(), filename="b.jpg"))
    ds, report = read_voc(tmp_path, errors="collect")
    assert [r.name for r in ds] == ["b.jpg"]
    (problem,) = report.errors
    assert problem.kind is ProblemKind.PARSE
    assert problem.file == str(bad)
    assert needle in str(problem)


def test_one_pixel_outside_is_clipped_with_a_warning(tmp_path: Path) -> None:
    """0-based tools write xmin 0; labeling tools write xmax = width + 1."""
    _write(tmp_path, "a.xml", _xml(_obj(box=(0, 1, 101, 80))))
    ds, report = read_voc(tmp_path)
    assert ds[0].objects[0].box.to_array().tolist() == [0.0, 0.0, 1.0, 1.0]
    assert [(p.kind, p.severity, p.field) for p in report.problems] == [
        (ProblemKind.CLIPPED, Severity.WARNING, "bndbox/xmin"),
        (ProblemKind.CLIPPED, Severity.WARNING, "bndbox/xmax"),
    ]


def test_box_fitting_the_transposed_image_hints_at_exif(tmp_path: Path) -> None:
    """ultralytics#19222: boxes that only fit the rotated image."""
    _write(tmp_path, "a.xml", _xml(_obj(box=(10, 10, 70, 95)), size=(100, 80)))
    _, report = read_voc(tmp_path, errors="collect")
    (problem,) = report.errors
    assert problem.kind is ProblemKind.OUT_OF_RANGE
    assert problem.hint is not None
    assert "rotated by 90 degrees" in problem.hint


def test_image_path_escaping_the_root_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "ann", "a.xml", _xml(_obj(), filename="../../secret.jpg"))
    ds, report = read_voc(tmp_path / "ann", errors="collect")
    assert len(ds) == 0
    assert [(p.kind, p.file, p.field) for p in report.errors] == [
        (ProblemKind.UNSAFE_PATH, str(tmp_path / "ann" / "a.xml"), "filename")
    ]


def test_missing_size_without_image_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "a.xml", _xml(_obj(), size=None))
    ds, report = read_voc(tmp_path, errors="collect")
    assert len(ds) == 0
    assert [(p.kind, p.field) for p in report.errors] == [(ProblemKind.MISSING_IMAGE, "size")]


def test_bad_difficult_value_is_a_warning(tmp_path: Path) -> None:
    _write(tmp_path, "a.xml", _xml(_obj(difficult="maybe")))
    ds, report = read_voc(tmp_path)
    assert not ds[0].objects[0].is_crowd
    assert [(p.kind, p.field) for p in report.warnings] == [(ProblemKind.BAD_VALUE, "difficult")]


def test_missing_or_empty_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        read_voc(tmp_path / "nope")
    with pytest.raises(NotFoundError, match=r"no \.xml files"):
        read_voc(tmp_path)


# ---------------------------------------------------------------------------- writer
def test_writer_fields_and_duplicate_stems(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.new("RGB", (30, 20)).save(tmp_path / sub / "x.png")
    Image.new("RGB", (30, 20)).save(tmp_path / "b" / "X.jpg")
    box = Box(top_x=0.0, top_y=0.0, bottom_x=1.0, bottom_y=1.0)
    records = [
        ImageRecord(
            image=str(tmp_path / "a" / "x.png"), objects=(ObjectAnnotation(label="p", box=box),)
        ),
        ImageRecord(image=str(tmp_path / "b" / "x.png"), width=30, height=20),
        ImageRecord(image=str(tmp_path / "b" / "X.jpg"), width=30, height=20),
    ]
    out = write_voc(LabeledDataset(records), tmp_path / "voc")
    assert sorted(p.name for p in out.iterdir()) == ["X_3.xml", "x.xml", "x_2.xml"]
    text = (out / "x.xml").read_text(encoding="utf-8")
    for tag in (
        "<folder>a</folder>",
        "<filename>x.png</filename>",
        "<width>30</width>",
        "<height>20</height>",
        "<depth>3</depth>",
        "<pose>Unspecified</pose>",
        "<truncated>0</truncated>",
        f"<path>{(tmp_path / 'a' / 'x.png').resolve()}</path>",
    ):
        assert tag in text
    assert _bndboxes(out / "x.xml") == [("1", "1", "30", "20")]  # size read from the image
    back, _ = read_voc(out, images_root=tmp_path)
    assert sorted(r.image for r in back) == sorted(str(Path(r.image).resolve()) for r in records)


def test_writer_paths_are_relative_inside_the_output_folder(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    ds = LabeledDataset([ImageRecord(image=str(tmp_path / "a.png"), width=8, height=8)])
    out = write_voc(ds, tmp_path)
    assert "<path>a.png</path>" in (out / "a.xml").read_text(encoding="utf-8")
    back, _ = read_voc(out)
    assert back[0].image == str((tmp_path / "a.png").resolve())


def test_writer_needs_a_size_or_an_image(tmp_path: Path) -> None:
    ds = LabeledDataset([ImageRecord(image=str(tmp_path / "gone.png"))])
    with pytest.raises(NotFoundError, match=r"record 0 .*gone\.png.*width/height"):
        write_voc(ds, tmp_path / "voc")
    assert not (tmp_path / "voc").exists()  # nothing half-written


def test_xml_special_characters_in_labels_are_escaped(tmp_path: Path) -> None:
    box = Box(top_x=0.1, top_y=0.1, bottom_x=0.5, bottom_y=0.5)
    label = 'R&D <"card">'
    ds = LabeledDataset(
        [
            ImageRecord(
                image=str(tmp_path / "a.png"),
                width=10,
                height=10,
                objects=(ObjectAnnotation(label=label, box=box),),
            )
        ]
    )
    back, _ = read_voc(write_voc(ds, tmp_path / "voc"))
    assert back.classes == (label,)
