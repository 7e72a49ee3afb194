"""Transitional: ``vlvae reproduce`` lives in :mod:`vlvae.recipes.reproduce`.

Kept importable (``from vlvae.reproduce import reproduce``) until the evaluation core's tests
import it from the recipe; remove this module then.
"""

from vlvae.recipes.reproduce import reproduce

__all__ = ["reproduce"]
