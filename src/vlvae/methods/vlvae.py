"""The paper's method: the VLVAE with marginal inference q(z|x), then q_True, q_Agg and the learned prior.

(``model.joint_inference=true`` gives the same model with joint inference; the ``joint`` method
is that setting under its own name.)

Cremer & Kushman 2018, Eqns 1-2 (stage 1), Eqn 3 (q_True), Eqns 4-5 (q_Agg), §4.2 (q_φ(z)).
"""

from vlvae.methods import Method
from vlvae.models.vlvae import VLVAE

METHOD = Method(
    name="vlvae",
    title="VLVAE (q(z|x))",
    reference="Cremer & Kushman 2018, Eqns 1-5",
    model=lambda model_config, method_config: VLVAE(model_config),
    weights_tag="vlvae",
    stages=("q_true", "q_agg", "prior"),
)
