"""JMVAE-kl (Suzuki, Nakayama & Matsuo 2016, "Joint multimodal learning with deep generative models",
https://arxiv.org/abs/1611.01891, §3.3, Eqn 5 there).

A joint posterior q(z|x, y) trains the decoders through the joint ELBO; the unimodal posteriors
q(z|x) and q(z|y) are pulled towards it by α [KL(q(z|x,y) || q(z|x)) + KL(q(z|x,y) || q(z|y))],
all parameters jointly (:func:`vlvae.objectives.jmvae_kl_objective`). Here the likelihoods carry
the VLVAE's weights w_x, w_y and the KL to the prior its warm-up, so that only the objective
differs from the paper's model. Images from text: z ~ q(z|y), decoded.

α does not follow the KL warm-up: β_t scales KL(q(z|x,y) || p(z)) alone and the α terms weigh α
from the first step, as in the authors' code (masa-su/Tars, ``MVAE.lowerbound``:
``annealing_beta * kl`` on the prior's KL, ``gamma`` times the two unimodal KLs unscaled; the paper
warms up "the regularisation term" without saying which; MultiVae scales both). Why not α·β_t:
warm-up keeps a fixed target, N(0, I), from pulling q(z|x,y) onto it before the decoders use z;
the α terms' targets, q(z|x) and q(z|y), are trained and follow q(z|x,y), so they cannot collapse
it onto a fixed point; and α·β_t would leave q(z|x) and q(z|y) all but untrained while the joint
posterior takes shape (no gradient at all at β_0 = 0). ``tests/methods/test_baseline_objectives.py``
pins the objective with β_t = 0.5 and α unscaled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import LongTensor, Tensor

from vlvae.methods import Method, MethodConfig, no_joint_inference
from vlvae.models.multimodal import MultimodalOutput, MultimodalVAE
from vlvae.objectives import jmvae_kl_objective, kl_diagonal_normals, kl_normal_standard


class JMVAE(MultimodalVAE):
    """JMVAE-kl on the VLVAE's networks; ``alpha`` weights the two unimodal KL terms."""

    def __init__(self, config, alpha: float = 0.1) -> None:
        super().__init__(config, joint_posterior=True)
        self.alpha = alpha

    def forward(
        self, x: Tensor, y: LongTensor, kl_weight: float = 1.0, w_x: float = 1.0, w_y: float = 1.0
    ) -> MultimodalOutput:
        mean, logvar = self.joint_posterior.encode(x, y)
        log_px, log_py = self.decode_terms(x, y, self.reparameterise(mean, logvar))
        kl = kl_normal_standard(mean, logvar)
        kl_x = kl_diagonal_normals(mean, logvar, *self.posterior.encode(x))
        kl_y = kl_diagonal_normals(mean, logvar, *self.text_posterior.encode(y))
        objective = jmvae_kl_objective(log_px, log_py, kl, kl_x, kl_y, self.alpha, w_x, w_y, kl_weight)
        return MultimodalOutput.of(objective, log_px, log_py, kl, kl_joint_image=kl_x, kl_joint_text=kl_y)


@dataclass
class JMVAEConfig(MethodConfig):
    """JMVAE-kl's ``method`` section.

    Attributes:
        alpha: the weight of its two KL terms to the unimodal posteriors (``method.alpha``, >= 0).
    """

    name: str = "jmvae"
    alpha: float = field(default=0.1, metadata={"range": (0, True, None, False)})


METHOD = Method(
    name="jmvae",
    title="JMVAE-kl",
    reference="Suzuki et al. 2016, Eqn 5",
    model=lambda model_config, method_config: JMVAE(model_config, method_config.alpha),
    weights_tag="jmvae",
    configure=no_joint_inference,
    own_text_posterior="q_JMVAE(z|y)",
    config=JMVAEConfig,
)
