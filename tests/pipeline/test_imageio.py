"""Image decoding: every common format works, every broken file is refused by name."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.pipeline.errors import ImageError
from app.pipeline.imageio import load_image
from tests.conftest import DEEPFACE, FR
from tests.corpus import png_declaring


def _save(path: Path, im: Image.Image, **kw: object) -> Path:
    im.save(path, **kw)
    return path


@pytest.fixture(scope="module")
def obama() -> Image.Image:
    return Image.open(FR / "obama.jpg").convert("RGB")


def test_rgba_png_is_composited_to_rgb() -> None:
    rgb = load_image(FR / "32bit.png")
    assert rgb.shape == (1200, 626, 3) and rgb.dtype == np.uint8


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "LA", "I;16", "1"])
def test_other_modes_become_rgb(tmp_path: Path, obama: Image.Image, mode: str) -> None:
    if mode == "I;16":
        grey = np.asarray(obama.convert("L"), dtype=np.uint16) * 257
        im = Image.fromarray(grey)
        assert im.mode.startswith("I;16")
        path = _save(tmp_path / "x16.png", im)
    else:
        path = _save(tmp_path / f"x_{mode.replace(';', '')}.{'jpg' if mode in ('L', 'CMYK') else 'png'}",
                     obama.convert(mode))
    rgb = load_image(path)
    assert rgb.shape == (obama.height, obama.width, 3) and rgb.dtype == np.uint8
    if mode == "I;16":  # scaled down, not clipped to white
        assert 40 < rgb.mean() < 215


def test_exif_orientation_is_applied(tmp_path: Path, obama: Image.Image) -> None:
    rotated = obama.transpose(Image.Transpose.ROTATE_90)  # stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 8  # ...and tagged "rotate 90 CW to view"
    path = _save(tmp_path / "rot.jpg", rotated, exif=exif)
    rgb = load_image(path)
    assert rgb.shape[:2] == (obama.height, obama.width)


@pytest.mark.parametrize(
    ("maker", "reason"),
    [
        (lambda d: d / "missing.jpg", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "empty.jpg", b""), "empty file"),
        (lambda d: _write(d / "text.jpg", b"hello, not a picture\n" * 10), "not an image"),
        (lambda d: _write(d / "cut.jpg", (FR / "obama.jpg").read_bytes()[:20000]), "truncated"),
        (lambda d: _write(d / "bomb.png", png_declaring(100_000, 100_000)), "too large"),
    ],
    ids=["missing", "directory", "zero-byte", "non-image", "truncated-jpeg", "bomb"],
)
def test_bad_files_are_refused_by_name(tmp_path: Path, maker, reason: str) -> None:
    path = maker(tmp_path)
    with pytest.raises(ImageError) as exc:
        load_image(path)
    assert reason in str(exc.value)
    assert str(path) in str(exc.value) or path.name in str(exc.value)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "secret.jpg", (FR / "obama.jpg").read_bytes())
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the read fail as it would for a user
        def deny(self: Path) -> bytes:
            raise PermissionError(13, "Permission denied", str(self))
        monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(ImageError, match="permission denied"):
        load_image(path)


def test_non_utf8_file_name(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    with open(raw, "wb") as f:
        f.write((DEEPFACE / "img2.jpg").read_bytes())
    assert load_image(os.fsdecode(raw)).ndim == 3


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
