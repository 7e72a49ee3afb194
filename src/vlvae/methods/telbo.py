"""TELBO, the triple ELBO (Vedantam, Fischer, Huang & Murphy 2018, "Generative models of visually
grounded imagination", https://arxiv.org/abs/1705.10762, §3, Eqn 3 there).

Three inference networks, q(z|x, y), q(z|x) and q(z|y), share the decoders: the objective is
ELBO(x, y) under q(z|x, y) + ELBO(x) under q(z|x) + ELBO(y) under q(z|y)
(:func:`vlvae.objectives.sum_of_elbos`), each with the VLVAE's weights and warm-up. As in that
paper, the unimodal terms do not train the decoders: they are evaluated with the decoders'
parameters detached (:func:`vlvae.models.multimodal.frozen_decoders`), so only the joint term
shapes p(x|z) and p(y|z), and each unimodal term trains its own inference network. Every KL is
computed with its own posterior's variance (docs/design.md §9: a library's TELBO used the joint one, and its
unimodal posteriors collapsed); the training logs report the unimodal posteriors' mean standard
deviation to show they do not.
"""

from __future__ import annotations

import torch
from torch import LongTensor, Tensor

from vlvae.methods import Method, no_joint_inference
from vlvae.models.multimodal import MultimodalOutput, MultimodalVAE, frozen_decoders
from vlvae.objectives import kl_normal_standard, sum_of_elbos


class TELBO(MultimodalVAE):
    """The triple ELBO on the VLVAE's networks, unimodal terms against frozen decoders."""

    def __init__(self, config) -> None:
        super().__init__(config, joint_posterior=True)

    def unimodal_terms(self, x: Tensor, y: LongTensor) -> dict:
        """The image-only and text-only ELBO terms (per example), decoders frozen."""
        mean_x, logvar_x = self.posterior.encode(x)
        mean_y, logvar_y = self.text_posterior.encode(y)
        log_px, _ = frozen_decoders(self, x, None, self.reparameterise(mean_x, logvar_x))
        _, log_py = frozen_decoders(self, None, y, self.reparameterise(mean_y, logvar_y))
        return {
            "log_px": log_px,
            "kl_x": kl_normal_standard(mean_x, logvar_x),
            "log_py": log_py,
            "kl_y": kl_normal_standard(mean_y, logvar_y),
            "std_x": torch.exp(0.5 * logvar_x),
            "std_y": torch.exp(0.5 * logvar_y),
        }

    def forward(
        self, x: Tensor, y: LongTensor, kl_weight: float = 1.0, w_x: float = 1.0, w_y: float = 1.0
    ) -> MultimodalOutput:
        mean, logvar = self.joint_posterior.encode(x, y)
        log_px, log_py = self.decode_terms(x, y, self.reparameterise(mean, logvar))
        kl = kl_normal_standard(mean, logvar)
        u = self.unimodal_terms(x, y)
        objective = sum_of_elbos(
            (log_px, log_py, kl), (u["log_px"], u["kl_x"]), (u["log_py"], u["kl_y"]), w_x, w_y, kl_weight
        )
        return MultimodalOutput.of(
            objective,
            log_px,
            log_py,
            kl,
            elbo_image_only=u["log_px"] - u["kl_x"],
            elbo_text_only=u["log_py"] - u["kl_y"],
            std_q_z_x=u["std_x"],
            std_q_z_y=u["std_y"],
        )


METHOD = Method(
    name="telbo",
    title="TELBO",
    reference="Vedantam et al. 2018, Eqn 3",
    model=lambda model_config, method_config: TELBO(model_config),
    weights_tag="telbo",
    configure=no_joint_inference,
    own_text_posterior="q_TELBO(z|y)",
)
