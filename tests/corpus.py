"""A corpus of awkward and broken image files, built fresh from the shared photos.

Each entry says whether facerec must *accept* the file (and find the face in it) or
*refuse* it with a message naming the file. Used by the CLI tests and the GUI tests.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import DEEPFACE, FR

ACCEPT, REFUSE = "accept", "refuse"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A 1 KB PNG whose header declares a *width* x *height* image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + _png_chunk(b"IEND", b""))


def _bomb() -> bytes:
    """A 1 KB PNG declaring a 200000 x 200000 image."""
    return png_declaring(200_000, 200_000)


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _obama(side: int = 800) -> Image.Image:
    im = Image.open(FR / "obama.jpg").convert("RGB")
    im.thumbnail((side, side))
    return im


def _exif_rotated() -> bytes:
    """Stored sideways, with the EXIF tag that says how to turn it upright."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the pixels are stored turned 90 CCW
    return _encode(_obama().transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif)


def _sixteen_bit() -> bytes:
    grey = np.asarray(_obama().convert("L"), dtype=np.uint16) * 257
    return _encode(Image.fromarray(grey), "PNG")


def _corrupt_png() -> bytes:
    data = bytearray(_encode(_obama(400), "PNG"))
    data[60:80] = b"\xde\xad\xbe\xef" * 5  # inside IDAT: the CRC no longer matches
    return bytes(data)


def _scrambled_jpeg() -> bytes:
    data = bytearray((FR / "obama.jpg").read_bytes())
    data[2:40] = os.urandom(38)  # the JPEG markers are gone
    return bytes(data)


def _animated_gif() -> bytes:
    frames = [_obama(400), _obama(400).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


#: name -> (file name, builder, expected outcome)
CORPUS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "zero-byte": ("empty.jpg", lambda: b"", REFUSE),
    "truncated-jpeg": ("cut.jpg", lambda: (FR / "obama.jpg").read_bytes()[:30_000], REFUSE),
    "truncated-png": ("cut.png", lambda: _encode(_obama(), "PNG")[:20_000], REFUSE),
    "scrambled-jpeg": ("scrambled.jpg", _scrambled_jpeg, REFUSE),
    "corrupt-png": ("crc.png", _corrupt_png, REFUSE),
    "text-as-jpg": ("notes.jpg", lambda: b"meeting notes, not a picture\n" * 40, REFUSE),
    "html-as-png": ("page.png", lambda: b"<!doctype html><html><body>hi</body></html>", REFUSE),
    "random-bytes": ("noise.jpeg", lambda: np.random.default_rng(1).bytes(5000), REFUSE),
    "decompression-bomb": ("bomb.png", _bomb, REFUSE),
    "bmp-bad-header": ("bad.bmp", lambda: b"BM" + b"\xff" * 60, REFUSE),
    "one-pixel": ("dot.png", lambda: _encode(Image.new("RGB", (1, 1), (200, 100, 50)), "PNG"),
                  REFUSE),
    "no-face": ("wall.jpg", lambda: _encode(Image.new("RGB", (640, 480), (90, 110, 130)), "JPEG"),
                REFUSE),
    "16-bit-png": ("grey16.png", _sixteen_bit, ACCEPT),
    "greyscale-jpeg": ("grey.jpg", lambda: _encode(_obama().convert("L"), "JPEG"), ACCEPT),
    "cmyk-jpeg": ("cmyk.jpg", lambda: _encode(_obama().convert("CMYK"), "JPEG"), ACCEPT),
    "rgba-png": ("alpha.png", lambda: (FR / "32bit.png").read_bytes(), ACCEPT),
    "exif-rotated": ("rotated.jpg", _exif_rotated, ACCEPT),
    "palette-png": ("palette.png", lambda: _encode(_obama().convert("P"), "PNG"), ACCEPT),
    "animated-gif": ("anim.gif", _animated_gif, ACCEPT),
    "tiff": ("photo.tiff", lambda: _encode(_obama(), "TIFF"), ACCEPT),
    "webp": ("photo.webp", lambda: _encode(_obama(), "WEBP"), ACCEPT),
    "wrong-extension": ("really-a-png.jpg", lambda: _encode(_obama(), "PNG"), ACCEPT),
    "non-utf8-name": ("caf\udce9.jpg", lambda: (FR / "obama2.jpg").read_bytes(), ACCEPT),
    "huge-but-legal": ("big.jpg", lambda: _encode(Image.open(DEEPFACE / "img26.jpg"), "JPEG",
                                                  quality=95), ACCEPT),
}


def build(kind: str, directory: Path) -> Path:
    """Write corpus entry *kind* into *directory*; return its path."""
    name, maker, _ = CORPUS[kind]
    path = directory / name
    with open(os.fsencode(path), "wb") as f:
        f.write(maker())
    return path
