"""``vlvae serve``: an interactive page and a JSON API over one opened run (:func:`create_app`)."""

from vlvae.serve.app import create_app

__all__ = ["create_app"]
