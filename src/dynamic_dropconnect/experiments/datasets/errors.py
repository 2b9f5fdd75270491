"""The errors every dataset loader raises: a missing, corrupted or otherwise unusable dataset."""

from __future__ import annotations

__all__ = ["DatasetCorruptError", "DatasetError", "DatasetMissingError"]


class DatasetError(RuntimeError):
    """Any problem with a dataset's files (missing, corrupted, malformed, unknown name)."""


class DatasetMissingError(DatasetError):
    """The files are nowhere to be found and could not be downloaded."""


class DatasetCorruptError(DatasetError):
    """A file was found but its checksum, size or header is wrong."""
