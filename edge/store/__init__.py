"""Storage that survives a power cut: atomic file writes (results database to come)."""

from edgehemo.store.atomic import sha256_file, write_atomically

__all__ = ["sha256_file", "write_atomically"]
