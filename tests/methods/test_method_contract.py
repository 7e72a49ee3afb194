"""The contract every registered method meets, checked by being registered (no method is named here).

Each entry of :mod:`vlvae.methods` builds its stage-1 network from a config, trains a few tiny
steps through the real pipeline, saves and reloads its weights exactly, takes the paper's q_Agg
post hoc, trains exactly the stages 2-3 it declares, is evaluated (its own ``report.md``) and
enters the comparison table.
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from vlvae.config import preset
from vlvae.methods import get_method, method_config, method_names
from vlvae.methods.stages import registered_stages
from vlvae.runs import STAGE1, finished_replicates, load_stage, load_vlvae, open_run, stage_dir


def _run(compared, name):
    return compared / ("run" if name == "vlvae" else f"methods/{name}")


@pytest.mark.parametrize("name", method_names())
def test_builds_and_its_loss_has_gradients(name):
    cfg = preset("tiny")
    cfg.method = method_config(name)  # the method's own section, with its knobs' defaults
    torch.manual_seed(0)
    model = get_method(name).model(cfg.model, cfg.method)
    x = torch.rand(4, 3, cfg.model.image_size, cfg.model.image_size)
    y = torch.randint(1, cfg.model.vocab_size, (4, cfg.model.text_length))
    out = model(x, y, kl_weight=1.0, w_x=0.1, w_y=10.0)
    assert torch.isfinite(out.loss) and out.loss.ndim == 0
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", method_names())
def test_trains_saves_and_reloads_exactly(compared, name):
    run = _run(compared, name)
    cfg, _ = open_run(run)
    assert cfg.method.name == name
    assert json.loads((stage_dir(run, STAGE1) / "metrics.json").read_text())["steps"] == cfg.stage1.steps
    saved = load_file(stage_dir(run, STAGE1) / "weights.safetensors")
    state = load_vlvae(run).state_dict()
    assert saved and all(torch.equal(state[key], value) for key, value in saved.items())


@pytest.mark.parametrize("name", method_names())
def test_trains_the_stages_it_declares_and_takes_q_agg(compared, name):
    run, method = _run(compared, name), get_method(name)
    assert "q_agg" in method.stages
    for stage in registered_stages():
        assert (stage_dir(run, stage.name) / "metrics.json").is_file() == (stage.name in method.stages)
    assert finished_replicates(run) == 1  # counted over the stages its method takes
    q_agg = load_stage(run, "q_agg")
    y = torch.ones(2, open_run(run)[0].model.text_length, dtype=torch.long)
    assert q_agg(y).sample().shape[0] == 2


@pytest.mark.parametrize("name", method_names())
def test_is_evaluated_and_enters_the_comparison(compared, name):
    run, method = _run(compared, name), get_method(name)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"]["name"] == name
    offered = set(metrics["distributions"]["text_posteriors"])
    assert "q_agg" in offered and ("own" in offered) == (method.own_text_posterior is not None)
    for table in (metrics["correctness"]["conditional"], metrics["likelihood"]["log_p_x_given_y"]):
        assert set(table) == offered
    assert 0.0 <= metrics["correctness"]["reconstruction"]["mean"] <= 1.0
    assert method.title in (run / "report.md").read_text()
    compared_metrics = json.loads((compared / "compare.json").read_text())["metrics"]
    assert name in [m["method"]["name"] for m in compared_metrics]
    assert method.title in (compared / "compare.md").read_text().replace("\\|", "|")
