"""The base of every error whose message is fit to show to a user as it is.

At the bottom of the application, so the configuration (`app.config`) can raise one;
the pipeline's own errors (`app.pipeline.errors`) derive from `FacerecError`.
"""

from __future__ import annotations


class FacerecError(Exception):
    """Base class: ``str(exc)`` is a one-line, user-facing reason."""


class DataDirError(FacerecError):
    """The data directory cannot be used: not a directory, not ours, not creatable."""
