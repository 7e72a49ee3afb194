"""vlvae: multimodal latent-variable models of images and text.

Implements and reproduces Cremer & Kushman (2018), "On the importance of
learning aggregate posteriors in multimodal latent variable models".
"""

__version__ = "0.1.0"
