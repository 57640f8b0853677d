"""Exceptions whose message is fit to show to a user as it is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.errors import DataDirError as DataDirError
from app.errors import FacerecError as FacerecError

if TYPE_CHECKING:
    from app.pipeline.types import Refusal


class ImageError(FacerecError):
    """An image file cannot be read or decoded."""


class NoFaceError(FacerecError):
    """An image was read but holds no usable face; `reason` says which way."""

    def __init__(self, message: str, reason: Refusal | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class ModelError(FacerecError):
    """A model file is missing, truncated, altered or cannot be loaded."""


class StoreError(FacerecError):
    """The face store cannot be opened, read or written."""


class StoreBusyError(StoreError):
    """Another process holds the store's write lock for too long."""


class PersonError(FacerecError):
    """A person's name is invalid, unknown, or already taken."""


class SourceError(FacerecError):
    """A camera, video file or stream cannot be opened or read."""
