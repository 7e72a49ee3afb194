"""The exception types whose message the command line prints as it is."""

__all__ = ["VLVAEError", "DiskFullError"]


class VLVAEError(Exception):
    """A problem in the user's input or files, with a message that says how to fix it."""


class DiskFullError(VLVAEError):
    """A write that ran out of space (``ENOSPC``): the message names the folder and, where known, the
    space the write needed; the file it was writing is left as it was (:func:`vlvae.io.atomic_path`)."""
