"""The one exception type whose message the command line prints as it is."""

__all__ = ["VLVAEError"]


class VLVAEError(Exception):
    """A problem in the user's input or files, with a message that says how to fix it."""
