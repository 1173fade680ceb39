"""Errors that carry a message a user can act on; the CLI prints them without a traceback."""


class EdgehemoError(Exception):
    """Base class for errors caused by input the user can fix."""


class DatasetError(EdgehemoError):
    """A dataset file or folder is missing, unreadable or malformed."""


class ImageReadError(EdgehemoError):
    """A file is not a readable image."""


class ModelNotFoundError(EdgehemoError):
    """A model name or checkpoint path resolves to nothing."""


class CheckpointError(EdgehemoError):
    """A checkpoint or its model card is missing, corrupt or does not match."""
