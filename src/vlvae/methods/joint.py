"""The VLVAE with joint inference q(z|x, y) (Cremer & Kushman 2018, §6 and Fig. 7).

Trained with the same weighted ELBO (Eqns 1-2) but with the image *and* its text as the
inference network's input. The paper's point: z then carries what is specific to the text,
which q(z|x) cannot recover from an image alone. A post-hoc q_Agg aggregates q(z|x, y).
"""

from vlvae.methods import Method
from vlvae.models.vlvae import VLVAE


def _configure(cfg):
    cfg.model.joint_inference = True
    return cfg


METHOD = Method(
    name="joint",
    title="VLVAE (q(z|x,y))",
    reference="Cremer & Kushman 2018, §6, Fig. 7",
    model=lambda model_config, method_config: VLVAE(model_config),
    weights_tag="vlvae",
    stages=("q_agg",),
    configure=_configure,
)
