"""The local model zoo: torchvision detectors the local backend can train, rebuilt by name.

Every model is assembled here from torchvision's own building blocks (backbones, feature
extractors, heads, anchor generators), so that one function, :func:`build_model`, builds the
same architecture for training and for inference: ``pretrained`` fixes the *structure* (frozen
batch norm, MobileNetV3's reduced tail ...) and ``load_weights`` whether torchvision's weights
API fetches the ImageNet backbone weights. A saved model records both, and the MLflow model
rebuilds it with ``load_weights=False`` before loading its own ``state_dict``.

Names (backbone weights; default input):

* ``ssdlite_mobilenet_v2``: ``MobileNet_V2_Weights``; 320 x 320
* ``ssdlite320_mobilenet_v3_large``: ``MobileNet_V3_Large_Weights``; 320 x 320
* ``fasterrcnn_mobilenet_v2_fpn``: ``MobileNet_V2_Weights``; short side 320, long 640
* ``fasterrcnn_mobilenet_v3_large_fpn``: ``MobileNet_V3_Large_Weights``; short side 320,
  long 640
* ``fasterrcnn_resnet50_fpn``: ``ResNet50_Weights``; short side 600, long 1333
* ``retinanet_resnet50_fpn``: ``ResNet50_Weights``; short side 600, long 1333

torch and torchvision are imported inside the functions: importing this module is free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from detectkit.errors import InvalidSettingsError, NotFoundError, missing_dependency
from detectkit.settings.request import validate_models

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "DEFAULT_MODEL",
    "LOCAL_MODELS",
    "ModelSpec",
    "backbone_weights",
    "build_model",
    "ensure_backbone_weights",
    "import_torch",
    "model_spec",
]

Family = Literal["ssd", "fasterrcnn", "retinanet"]


@dataclass(frozen=True)
class ModelSpec:
    """What the local backend knows of one trainable model.

    Attributes:
        name: The model name (``model_name`` in training parameters).
        family: ``"ssd"`` (fixed square input), ``"fasterrcnn"`` or ``"retinanet"``.
        weights: The torchvision backbone weights, as ``"<Enum>.<member>"``.
        min_size: Default short side (the square side for SSD models).
        max_size: Default long side.
        learning_rate: Default learning rate (SGD, batch ``batch_size``).
        batch_size: Default training batch size.
        epochs: Default number of epochs.
    """

    name: str
    family: Family
    weights: str
    min_size: int
    max_size: int
    learning_rate: float
    batch_size: int
    epochs: int


LOCAL_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "ssdlite_mobilenet_v2",
            "ssd",
            "MobileNet_V2_Weights.IMAGENET1K_V1",
            320,
            320,
            0.04,
            8,
            30,
        ),
        ModelSpec(
            "ssdlite320_mobilenet_v3_large",
            "ssd",
            "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
            320,
            320,
            0.02,
            8,
            30,
        ),
        ModelSpec(
            "fasterrcnn_mobilenet_v2_fpn",
            "fasterrcnn",
            "MobileNet_V2_Weights.IMAGENET1K_V1",
            320,
            640,
            0.01,
            4,
            15,
        ),
        ModelSpec(
            "fasterrcnn_mobilenet_v3_large_fpn",
            "fasterrcnn",
            "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
            320,
            640,
            0.01,
            4,
            15,
        ),
        ModelSpec(
            "fasterrcnn_resnet50_fpn",
            "fasterrcnn",
            "ResNet50_Weights.IMAGENET1K_V1",
            600,
            1333,
            0.005,
            2,
            15,
        ),
        ModelSpec(
            "retinanet_resnet50_fpn",
            "retinanet",
            "ResNet50_Weights.IMAGENET1K_V1",
            600,
            1333,
            0.005,
            2,
            15,
        ),
    )
}

#: The model trained when a request names none (CPU-friendly; Azure's default is
#: ``fasterrcnn_resnet50_fpn``, which the local backend trains too, slowly on a CPU).
DEFAULT_MODEL = "ssdlite_mobilenet_v2"


def import_torch() -> Any:
    """``torch``, or :class:`~detectkit.MissingDependencyError` naming the ``local`` extra."""
    try:
        import torch
        import torchvision  # noqa: F401
    except ImportError as exc:
        raise missing_dependency("torch and torchvision", "local") from exc
    return torch


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``.

    Raises:
        InvalidSettingsError: The local backend cannot train ``name``; lists what it can.
    """
    validate_models([name], LOCAL_MODELS, "local")
    return LOCAL_MODELS[name]


def backbone_weights(name: str) -> Any:
    """The torchvision weights enum member of the model's backbone (``MobileNet_V2_Weights.IMAGENET1K_V1``)."""
    import_torch()
    import torchvision.models as tvm

    enum_name, member = model_spec(name).weights.split(".")
    return getattr(getattr(tvm, enum_name), member)


def ensure_backbone_weights(name: str) -> Path:
    """Make sure the backbone weights of ``name`` are in the torch cache (download them if
    the cache lacks them and the network allows); returns the cached file.

    Raises:
        NotFoundError: The weights are not cached and cannot be downloaded; the message names
            the file, the folder to put it in, and the ``pretrained: false`` alternative.
    """
    torch = import_torch()
    weights = backbone_weights(name)
    file_name = os.path.basename(str(weights.url))
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    cached = folder / file_name
    if cached.is_file():
        return cached
    try:
        weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, HTTPError, OSError, hash mismatch ...
        raise NotFoundError(
            f"cannot get the pretrained backbone weights of {name!r} ({weights}): "
            f"{type(exc).__name__}: {exc}\n"
            f"  hint: download {weights.url} on a machine with network access and put it at "
            f"{cached} (file name {file_name}), or train from scratch with "
            "training_parameters={'advanced_settings': {'pretrained': False}}"
        ) from exc
    return cached


def build_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool,
    load_weights: bool | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    detections_per_image: int = 100,
    layers_to_freeze: int | None = None,
) -> nn.Module:
    """Build model ``name`` for ``num_classes`` object classes (background not included).

    Args:
        name: A name of :data:`LOCAL_MODELS`.
        num_classes: Object classes; the model predicts ``1 .. num_classes`` (0 is background).
        pretrained: Structure for an ImageNet-pretrained backbone (frozen batch norm for the
            two-stage models, MobileNetV3's full tail).
        load_weights: Fetch those weights through torchvision's weights API (default:
            ``pretrained``); ``False`` when the weights come from a saved ``state_dict``.
        min_size: Short side of the network input (the square side for SSD models).
        max_size: Long side (ignored by SSD models).
        score_threshold: Boxes scoring below are dropped.
        nms_threshold: IoU of the per-class non-maximum suppression.
        detections_per_image: Most boxes per image.
        layers_to_freeze: Backbone stages kept frozen, from the input. Default: none from
            scratch; with a pretrained backbone the first half (torchvision's default for
            Faster R-CNN, applied here to every model: on a CPU it halves the step time).

    Raises:
        InvalidSettingsError: Unknown name, or sizes out of range.
        NotFoundError: ``load_weights`` and the weights cannot be fetched.
    """
    spec = model_spec(name)
    import_torch()
    if load_weights is None:
        load_weights = pretrained
    if load_weights:
        ensure_backbone_weights(name)
    weights = backbone_weights(name) if load_weights else None
    low = min_size or spec.min_size
    high = max(max_size or spec.max_size, low)
    if spec.family == "ssd" and not 64 <= low <= 1024:
        raise InvalidSettingsError(
            f"min_size: {name} takes a square input of 64 to 1024 pixels, got {low}"
        )
    options = {
        "score_threshold": score_threshold,
        "nms_threshold": nms_threshold,
        "detections_per_image": detections_per_image,
    }
    if name == "ssdlite_mobilenet_v2":
        return _ssdlite_mobilenet_v2(
            num_classes + 1, pretrained, weights, low, options, layers_to_freeze
        )
    if name == "ssdlite320_mobilenet_v3_large":
        return _ssdlite_mobilenet_v3(
            num_classes + 1, pretrained, weights, low, options, layers_to_freeze
        )
    if name == "fasterrcnn_mobilenet_v2_fpn":
        backbone = _mobilenet_v2_fpn(pretrained, weights, layers_to_freeze)
        return _faster_rcnn(backbone, num_classes + 1, low, high, options, _MOBILE_ANCHORS)
    if name == "fasterrcnn_mobilenet_v3_large_fpn":
        backbone = _mobilenet_v3_fpn(pretrained, weights, layers_to_freeze)
        return _faster_rcnn(backbone, num_classes + 1, low, high, options, _V3_ANCHORS)
    if name == "fasterrcnn_resnet50_fpn":
        backbone = _resnet50_fpn(pretrained, weights, layers_to_freeze, retina=False)
        return _faster_rcnn(backbone, num_classes + 1, low, high, options, None)
    backbone = _resnet50_fpn(pretrained, weights, layers_to_freeze, retina=True)
    return _retinanet(backbone, num_classes + 1, low, high, options)


# ------------------------------------------------------------------------------ builders
# anchor sizes per feature map; one count per location on every level (RPNHead needs it)
_MOBILE_ANCHORS = ((32, 48), (64, 96), (128, 192), (256, 384))
_V3_ANCHORS = ((32, 64, 128, 256, 512),) * 3


def _trainable(stages: int, layers_to_freeze: int | None, default: int) -> int:
    """Trainable backbone stages: all but ``layers_to_freeze`` (torchvision counts from the end)."""
    if layers_to_freeze is None:
        return default
    return max(0, min(stages, stages - layers_to_freeze))


def _ssd_options(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "score_thresh": options["score_threshold"],
        "nms_thresh": options["nms_threshold"],
        "detections_per_img": options["detections_per_image"],
        "topk_candidates": max(300, options["detections_per_image"]),
        # MobileNet SSDLite: inputs scaled from [0, 1] to [-1, 1]
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }


def _ssd(backbone: nn.Module, num_classes: int, size: int, options: dict[str, Any]) -> nn.Module:
    from functools import partial

    from torch import nn
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead

    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    channels = det_utils.retrieve_out_channels(backbone, (size, size))
    head = SSDLiteHead(channels, anchors.num_anchors_per_location(), num_classes, norm_layer)
    model: nn.Module = SSD(
        backbone, anchors, (size, size), num_classes, head=head, **_ssd_options(options)
    )
    return model


class _Expansion:
    """Namespace for the MobileNetV2 SSDLite feature extractor (built lazily: needs torch)."""

    cls: Any = None

    @classmethod
    def get(cls) -> Any:
        if cls.cls is None:
            cls.cls = _make_v2_extractor()
        return cls.cls


def _make_v2_extractor() -> Any:
    from collections import OrderedDict

    from torch import Tensor, nn
    from torchvision.models.detection.ssdlite import _extra_block, _normal_init

    class MobileNetV2SSDLiteExtractor(nn.Module):
        """MobileNetV2 features split at the expansion layer of block 14 (stride 16, 576
        channels) and its end (stride 32, 1280 channels), plus four SSDLite extra blocks: six
        feature maps, as in the MobileNetV2 paper's SSDLite."""

        def __init__(self, features: Any, norm_layer: Any) -> None:
            super().__init__()
            c4: Any = features[14]
            self.features = nn.Sequential(
                nn.Sequential(*features[:14], c4.conv[0]),
                nn.Sequential(*c4.conv[1:], *features[15:]),
            )
            extra = nn.ModuleList(
                [
                    _extra_block(1280, 512, norm_layer),
                    _extra_block(512, 256, norm_layer),
                    _extra_block(256, 256, norm_layer),
                    _extra_block(256, 128, norm_layer),
                ]
            )
            _normal_init(extra)
            self.extra = extra

        def forward(self, x: Tensor) -> dict[str, Tensor]:
            output = []
            for block in self.features:
                x = block(x)
                output.append(x)
            for block in self.extra:
                x = block(x)
                output.append(x)
            return OrderedDict((str(i), v) for i, v in enumerate(output))

    return MobileNetV2SSDLiteExtractor


def _ssdlite_mobilenet_v2(
    num_classes: int,
    pretrained: bool,
    weights: Any,
    size: int,
    options: dict[str, Any],
    layers_to_freeze: int | None,
) -> nn.Module:
    from functools import partial

    from torch import nn
    from torchvision.models import mobilenet_v2
    from torchvision.models.detection.ssdlite import _normal_init

    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    net = mobilenet_v2(weights=weights, norm_layer=norm_layer)
    if not pretrained:
        _normal_init(net)
    # stages start after the strided blocks (as torchvision's extractors count them)
    stage_starts = (0, 2, 4, 7, 14, 18)
    trainable = _trainable(6, layers_to_freeze, 3 if pretrained else 6)
    freeze_before = len(net.features) if trainable == 0 else stage_starts[6 - trainable]
    for block in net.features[:freeze_before]:
        for parameter in block.parameters():
            parameter.requires_grad_(False)
    backbone = _Expansion.get()(net.features, norm_layer)
    return _ssd(backbone, num_classes, size, options)


def _ssdlite_mobilenet_v3(
    num_classes: int,
    pretrained: bool,
    weights: Any,
    size: int,
    options: dict[str, Any],
    layers_to_freeze: int | None,
) -> nn.Module:
    from functools import partial

    from torch import nn
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection.ssdlite import _mobilenet_extractor, _normal_init

    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    # as torchvision: the reduced tail (Table 6 of the MobileNetV3 paper) when not pretrained
    net = mobilenet_v3_large(weights=weights, norm_layer=norm_layer, reduced_tail=not pretrained)
    if not pretrained:
        _normal_init(net)
    trainable = _trainable(6, layers_to_freeze, 3 if pretrained else 6)
    backbone = _mobilenet_extractor(net, trainable, norm_layer)
    return _ssd(backbone, num_classes, size, options)


def _mobilenet_v2_fpn(pretrained: bool, weights: Any, layers_to_freeze: int | None) -> nn.Module:
    from torch import nn
    from torchvision.models import mobilenet_v2
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import misc as misc_nn_ops
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    norm_layer = misc_nn_ops.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    features = mobilenet_v2(weights=weights, norm_layer=norm_layer).features
    # ends of the stride 4, 8, 16 and 32 stages
    stage_ends = (3, 6, 13, 18)
    trainable = _trainable(4, layers_to_freeze, 2 if pretrained else 4)
    freeze_before = 0 if trainable >= 4 else stage_ends[3 - trainable] + 1
    for block in features[:freeze_before]:
        for parameter in block.parameters():
            parameter.requires_grad_(False)
    built: nn.Module = BackboneWithFPN(
        features,
        return_layers={"6": "0", "13": "1", "18": "2"},
        in_channels_list=[32, 96, 1280],
        out_channels=128,
        extra_blocks=LastLevelMaxPool(),
    )
    return built


def _mobilenet_v3_fpn(pretrained: bool, weights: Any, layers_to_freeze: int | None) -> nn.Module:
    from torch import nn
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor
    from torchvision.ops import misc as misc_nn_ops

    norm_layer = misc_nn_ops.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    net = mobilenet_v3_large(weights=weights, norm_layer=norm_layer)
    trainable = _trainable(6, layers_to_freeze, 3 if pretrained else 6)
    return _mobilenet_extractor(net, True, trainable)  # type: ignore[no-any-return]


def _resnet50_fpn(
    pretrained: bool, weights: Any, layers_to_freeze: int | None, *, retina: bool
) -> nn.Module:
    from torch import nn
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import misc as misc_nn_ops
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    norm_layer = misc_nn_ops.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    net = resnet50(weights=weights, norm_layer=norm_layer)
    trainable = _trainable(5, layers_to_freeze, 3 if pretrained else 5)
    if retina:
        return _resnet_fpn_extractor(  # type: ignore[no-any-return]
            net, trainable, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256)
        )
    return _resnet_fpn_extractor(net, trainable)  # type: ignore[no-any-return]


def _faster_rcnn(
    backbone: nn.Module,
    num_classes: int,
    min_size: int,
    max_size: int,
    options: dict[str, Any],
    anchor_sizes: tuple[tuple[int, ...], ...] | None,
) -> nn.Module:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FasterRCNN

    anchors = None
    if anchor_sizes is not None:
        anchors = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    built: nn.Module = FasterRCNN(
        backbone,
        num_classes,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        box_score_thresh=options["score_threshold"],
        box_nms_thresh=options["nms_threshold"],
        box_detections_per_img=options["detections_per_image"],
    )
    return built


def _retinanet(
    backbone: nn.Module, num_classes: int, min_size: int, max_size: int, options: dict[str, Any]
) -> nn.Module:
    from torchvision.models.detection.retinanet import RetinaNet

    built: nn.Module = RetinaNet(
        backbone,
        num_classes,
        min_size=min_size,
        max_size=max_size,
        score_thresh=options["score_threshold"],
        nms_thresh=options["nms_threshold"],
        detections_per_img=options["detections_per_image"],
    )
    return built
