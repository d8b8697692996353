"""The Azure ML AutoML object-detection scoring contract: requests in, :class:`Prediction` out."""

from __future__ import annotations

from detectkit.scoring.response import (
    CLIP_TOLERANCE,
    COORDINATE_KEYS,
    RESPONSE_CLIP_TOLERANCE,
    ImageInput,
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

__all__ = [
    "CLIP_TOLERANCE",
    "COORDINATE_KEYS",
    "RESPONSE_CLIP_TOLERANCE",
    "ImageInput",
    "build_request",
    "decode_request",
    "encode_request",
    "format_response",
    "image_sizes",
    "parse_batch_output",
    "parse_onnx_output",
    "parse_response",
    "parse_yolo_onnx_output",
    "read_predictions",
]
