"""Inference backends, one module each, found by key (`--backend cpu`)."""

from edgehemo.device.backends.base import Backend, BackendError, backend_class, backend_keys

__all__ = ["Backend", "BackendError", "backend_class", "backend_keys"]
