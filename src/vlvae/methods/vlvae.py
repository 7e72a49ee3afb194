"""The paper's method: the VLVAE with marginal inference q(z|x), then q_True, q_Agg and the learned prior.

Cremer & Kushman 2018, Eqns 1-2 (stage 1), Eqn 3 (q_True), Eqns 4-5 (q_Agg), §4.2 (q_φ(z)).
"""

from vlvae.methods import Method
from vlvae.models.vlvae import VLVAE


def _configure(cfg):
    if cfg.model.joint_inference:
        from vlvae.errors import VLVAEError

        raise VLVAEError("method 'vlvae' infers z from the image alone; for joint inference use "
                         "--method joint (or set model.joint_inference=false)")
    return cfg


METHOD = Method(
    name="vlvae",
    title="VLVAE (q(z|x))",
    reference="Cremer & Kushman 2018, Eqns 1-5",
    model=lambda model_config, method_config: VLVAE(model_config),
    weights_kind="vlvae",
    stages=("q_true", "q_agg", "prior"),
    configure=_configure,
)
