"""vlvae: multimodal latent-variable models of images and text.

Implements and reproduces Cremer & Kushman (2018), "On the importance of
learning aggregate posteriors in multimodal latent variable models".

A trained model in three lines (an archive of ``vlvae export``, or a run folder)::

    import vlvae
    model = vlvae.load("model.tar")
    samples = model.from_text("small red metal cube left large blue rubber sphere", "agg", n=4)
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def __getattr__(name: str):
    """``vlvae.load`` (:func:`vlvae.archive.load`), imported on first use."""
    if name == "load":
        from vlvae.archive import load  # noqa: PLC0415  deferred: `import vlvae` stays light (data workers, --version)

        return load
    raise AttributeError(f"module 'vlvae' has no attribute {name!r}")
