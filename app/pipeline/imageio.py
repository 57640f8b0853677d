"""Reading photos robustly: any path, any common format, never a traceback.

Pillow decodes still images because it refuses what OpenCV silently accepts: a
truncated JPEG raises instead of returning a half-grey picture, and the image size is
known from the header before any pixels are decoded, so an image too large to decode
(a "decompression bomb" among them) is refused cheaply, with its size. EXIF orientation
is applied so a phone photo is upright.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.config import display_path
from app.pipeline.errors import FacerecError, ImageError

log = logging.getLogger(__name__)

#: Largest image accepted, in pixels (a 100-megapixel photo is fine; a bomb is not).
MAX_PIXELS = 100_000_000
#: Largest file accepted, in bytes.
MAX_FILE_BYTES = 200 * 1024 * 1024

# Pillow's own guard refuses a large image before its size is known to us, calling
# it a "decompression bomb"; ours (decode_image) reads the size from the header first
# and says how large the photo is and what the limit is. Pillow is used only here.
Image.MAX_IMAGE_PIXELS = None

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm", ".jfif"}
)


#: A path rendered for a message, even when its bytes are not valid UTF-8.
display_name = display_path


def load_image(path: str | Path, *, label: str | None = None) -> np.ndarray:
    """Read an image file as an RGB ``uint8`` array of shape (H, W, 3).

    *label* is how messages name the file (by default its path).

    Raises
    ------
    ImageError
        With a one-line reason naming the file: missing, a directory, unreadable,
        empty, too large, not an image, truncated or corrupt.
    """
    p = Path(path)
    name = display_name(p) if label is None else label
    try:
        if p.is_dir():
            raise ImageError(f"{name}: is a directory, not an image")
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(f"{name}: file too large ({size / 2**20:.0f} MiB)")
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, name)


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes to RGB ``uint8`` (H, W, 3); see `load_image`."""
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            # Pillow warns about bombs (we check the size ourselves) and about damaged
            # metadata such as corrupt EXIF; neither is the user's concern here.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    raise ImageError(f"{name}: image has no pixels")
                if w * h > MAX_PIXELS:
                    raise ImageError(
                        f"{name}: image too large ({w}x{h} pixels, {w * h / 1e6:.0f} megapixels; "
                        f"the limit is {MAX_PIXELS // 1_000_000} megapixels)"
                    )
                im.load()
                upright: Image.Image = ImageOps.exif_transpose(im) or im
                return _to_rgb8(upright)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image, or an unsupported format") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "truncated" in reason.lower():
            reason = "file is truncated"
        raise ImageError(f"{name}: corrupt image ({reason})") from None


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to 8-bit RGB, scaling high bit depths instead of clipping."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        if im.mode.startswith("I;16") or (im.mode == "I" and hi > 255):
            a = a / 257.0 if hi > 255 else a
        elif hi > lo and (hi > 255 or lo < 0):
            a = (a - lo) * (255.0 / (hi - lo))
        grey = np.clip(a + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite on mid-grey: transparent pixels often hold arbitrary colours.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        im = Image.alpha_composite(background, rgba)
    rgb = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


@dataclass(frozen=True)
class PersonFolders:
    """Photos found in a folder with one subfolder of photos per person.

    Attributes
    ----------
    photos : list of (str, Path)
        (person's name, photo), by person then file name.
    skipped : list of str
        One line per file or folder that cannot be used, saying why.
    loose : int
        Images lying directly in the folder (they belong to nobody).
    """

    photos: list[tuple[str, Path]]
    skipped: list[str]
    loose: int


def person_folders(root: Path) -> PersonFolders:
    """List a folder of people: the subfolder's name is the person's name.

    Raises
    ------
    FacerecError
        If *root* is not a readable directory.
    """
    from app.pipeline.types import normalize_name

    root = Path(root)
    if not root.is_dir():
        raise FacerecError(f"{display_name(root)}: not a directory")
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise FacerecError(f"{display_name(root)}: cannot list ({exc.strerror})") from None
    photos: list[tuple[str, Path]] = []
    skipped: list[str] = []
    for folder in (p for p in entries if p.is_dir() and not p.name.startswith(".")):
        try:
            name = normalize_name(folder.name)
            files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
        except (FacerecError, OSError) as exc:
            skipped.append(f"{display_name(folder)}: {exc}")
            continue
        for f in files:
            if f.suffix.lower() in IMAGE_SUFFIXES:
                photos.append((name, f))
            else:
                skipped.append(f"{display_name(f)}: not an image file")
    loose = sum(1 for f in entries if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    return PersonFolders(photos, skipped, loose)
