"""Networks of the VLVAE, its text posteriors and aggregate prior, and the attribute classifier.

See :mod:`vlvae.models.vlvae` (the model, Cremer & Kushman 2018 §2),
:mod:`vlvae.models.posteriors` (q(z|x), q_φ(z|y), q_φ(z)) and
:mod:`vlvae.models.flows` (the coupling flows of §5.1.1).
"""

from vlvae.models.classifier import AttributeClassifier
from vlvae.models.config import ModelConfig
from vlvae.models.flows import (
    ConditionalDiagNormal,
    LearnableDiagNormal,
    SigmoidAffineTransform,
    coupling_transforms,
)
from vlvae.models.image import ImageDecoder, ImageEncoder, ResidualBlock
from vlvae.models.likelihoods import ConstrainedBeta, map_pixels, unmap_pixels
from vlvae.models.posteriors import POSTERIOR_FAMILIES, AggregatePrior, ImagePosterior, TextPosterior
from vlvae.models.shared import SharedDecoder, SharedEncoder
from vlvae.models.text import TextDecoder, TextEncoder
from vlvae.models.vlvae import VLVAE, VLVAEOutput

__all__ = [
    "AggregatePrior",
    "AttributeClassifier",
    "ConditionalDiagNormal",
    "ConstrainedBeta",
    "ImageDecoder",
    "ImageEncoder",
    "ImagePosterior",
    "LearnableDiagNormal",
    "ModelConfig",
    "POSTERIOR_FAMILIES",
    "ResidualBlock",
    "SharedDecoder",
    "SharedEncoder",
    "SigmoidAffineTransform",
    "TextDecoder",
    "TextEncoder",
    "TextPosterior",
    "VLVAE",
    "VLVAEOutput",
    "coupling_transforms",
    "map_pixels",
    "unmap_pixels",
]
