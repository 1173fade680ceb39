"""Storage that survives a power cut: atomic files, the results database, the disk guard."""

from edgehemo.store.atomic import sha256_file, write_atomically
from edgehemo.store.db import (
    CellRecord,
    FrameRecord,
    ResultStore,
    SessionInfo,
    StorageError,
)
from edgehemo.store.diskguard import DiskGuard

__all__ = [
    "CellRecord",
    "DiskGuard",
    "FrameRecord",
    "ResultStore",
    "SessionInfo",
    "StorageError",
    "sha256_file",
    "write_atomically",
]
