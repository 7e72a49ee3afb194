"""MVAE, the product-of-experts multimodal VAE (Wu & Goodman 2018, "Multimodal generative models for
scalable weakly-supervised learning", https://arxiv.org/abs/1802.05335, §2-3).

Each modality has an inference network ("expert"); a posterior given any subset of modalities is
the normalised product of their experts and the prior expert N(0, I)
(:func:`vlvae.objectives.product_of_experts`). With two modalities the sub-sampled objective is
ELBO(x, y) + ELBO(x) + ELBO(y) under q(z|x,y) ∝ p(z) q̃(z|x) q̃(z|y), q(z|x) ∝ p(z) q̃(z|x) and
q(z|y) ∝ p(z) q̃(z|y) (:func:`vlvae.objectives.sum_of_elbos`, the VLVAE's weights and warm-up),
every term training the decoders. ``image_posterior`` and ``text_posterior`` return the products
with the prior expert.
"""

from __future__ import annotations

import torch
from torch import LongTensor, Tensor

from vlvae.methods import Method, no_joint_inference
from vlvae.models.multimodal import GaussianTextPosterior, MultimodalOutput, MultimodalVAE
from vlvae.models.posteriors import ImagePosterior
from vlvae.objectives import kl_normal_standard, product_of_experts, sum_of_elbos


def _with_prior_expert(*experts: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The product of the prior expert N(0, I) and the given experts' (mean, logvar): (mean, logvar)."""
    zeros = torch.zeros_like(experts[0][0])
    return product_of_experts([zeros] + [m for m, _ in experts], [zeros] + [lv for _, lv in experts])


class ImageExpert(ImagePosterior):
    """q(z|x) ∝ N(0, I) q̃(z|x): ``expert`` is q̃'s (mean, logvar), ``encode`` the product's."""

    def expert(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return super().encode(x)

    def encode(self, x: Tensor, y: LongTensor | None = None) -> tuple[Tensor, Tensor]:
        return _with_prior_expert(self.expert(x))


class TextExpert(GaussianTextPosterior):
    """q(z|y) ∝ N(0, I) q̃(z|y), as :class:`ImageExpert`."""

    def expert(self, y: LongTensor) -> tuple[Tensor, Tensor]:
        return super().encode(y)

    def encode(self, y: LongTensor) -> tuple[Tensor, Tensor]:
        return _with_prior_expert(self.expert(y))


class MVAE(MultimodalVAE):
    """The MVAE on the VLVAE's networks."""

    def __init__(self, config) -> None:
        super().__init__(config, joint_posterior=False)
        self.posterior = ImageExpert(config)
        self.text_posterior = TextExpert(config)

    def joint_encode(self, x: Tensor, y: LongTensor) -> tuple[Tensor, Tensor]:
        """q(z|x, y) ∝ N(0, I) q̃(z|x) q̃(z|y): (mean, logvar)."""
        return _with_prior_expert(self.posterior.expert(x), self.text_posterior.expert(y))

    def forward(
        self, x: Tensor, y: LongTensor, kl_weight: float = 1.0, w_x: float = 1.0, w_y: float = 1.0
    ) -> MultimodalOutput:
        expert_x, expert_y = self.posterior.expert(x), self.text_posterior.expert(y)
        mean, logvar = _with_prior_expert(expert_x, expert_y)
        mean_x, logvar_x = _with_prior_expert(expert_x)
        mean_y, logvar_y = _with_prior_expert(expert_y)
        log_px, log_py = self.decode_terms(x, y, self.reparameterise(mean, logvar))
        log_px_x, _ = self.decode_terms(x, None, self.reparameterise(mean_x, logvar_x))
        _, log_py_y = self.decode_terms(None, y, self.reparameterise(mean_y, logvar_y))
        kl, kl_x, kl_y = (
            kl_normal_standard(m, v) for m, v in ((mean, logvar), (mean_x, logvar_x), (mean_y, logvar_y))
        )
        objective = sum_of_elbos(
            (log_px, log_py, kl), (log_px_x, kl_x), (log_py_y, kl_y), w_x, w_y, kl_weight
        )
        return MultimodalOutput.of(
            objective,
            log_px,
            log_py,
            kl,
            elbo_image_only=log_px_x - kl_x,
            elbo_text_only=log_py_y - kl_y,
            std_q_z_x=torch.exp(0.5 * logvar_x),
            std_q_z_y=torch.exp(0.5 * logvar_y),
        )


METHOD = Method(
    name="mvae",
    title="MVAE (PoE)",
    reference="Wu & Goodman 2018, §2-3",
    model=lambda model_config, method_config: MVAE(model_config),
    weights_tag="mvae",
    configure=no_joint_inference,
    own_text_posterior="q_MVAE(z|y)",
)
