"""Store errors. The API server maps each one to a gRPC status code."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every store error."""


class NotFound(StoreError):
    """The key does not exist (gRPC NOT_FOUND)."""


class AlreadyExists(StoreError):
    """Create found the key already there (gRPC ALREADY_EXISTS)."""


class Conflict(StoreError):
    """The resourceVersion precondition no longer holds (gRPC ABORTED)."""


class Unavailable(StoreError):
    """etcd can't be reached (gRPC UNAVAILABLE)."""


class TooOld(StoreError):
    """A watch asked for a revision that etcd has compacted (gRPC OUT_OF_RANGE)."""
