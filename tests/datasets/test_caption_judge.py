"""The caption judge: trained on a data set whose texts say exactly what the image shows, it must
prefer the true texts; its scores follow their definitions (by hand); a finished folder reloads.

The fixture: 8 x 8 images, dark and noisy, with one square of one colour (red, green or blue) in a
quadrant ("red top left", "blue bottom right", ...) or everywhere ("green all"), captioned by texts
of variable length (3 or 2 words, then the end word): the text is a function of the image.
"""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vlvae.config import ClassifierConfig, ExperimentConfig
from vlvae.data.dataset import ImageTextDataset, images_to_float
from vlvae.data.format import finalise_dataset, read_vocabulary
from vlvae.data.vocabulary import Vocabulary
from vlvae.datasets.caption_judge import CaptionScorer, load_caption_judge, load_judge, reference_scores
from vlvae.errors import VLVAEError
from vlvae.models.captioner import Captioner
from vlvae.training.caption_judge import CAPTION_JUDGE, train_caption_judge

SIDE, LENGTH = 8, 4
COLOURS = {"red": 0, "green": 1, "blue": 2}
PLACES = {
    ("top", "left"): (slice(0, 4), slice(0, 4)),
    ("top", "right"): (slice(0, 4), slice(4, 8)),
    ("bottom", "left"): (slice(4, 8), slice(0, 4)),
    ("bottom", "right"): (slice(4, 8), slice(4, 8)),
    ("all",): (slice(0, 8), slice(0, 8)),
}
VOCAB = Vocabulary(
    words=("<end>", "<unk>", *COLOURS, "top", "bottom", "left", "right", "all"), end="<end>", unknown="<unk>"
)


def _split(rng, n):
    images = rng.integers(0, 40, size=(n, SIDE, SIDE, 3)).astype(np.uint8)
    records = []
    places = list(PLACES)
    for i in range(n):
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        place = places[rng.integers(len(places))]
        rows, cols = PLACES[place]
        images[i, rows, cols, COLOURS[colour]] = rng.integers(200, 256)
        records.append({"captions": [[colour, *place]]})
    return images, records


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("captions") / "data"
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 384), ("val", 96)):
        images, records = _split(rng, n)
        (out / split).mkdir(parents=True)
        np.save(out / split / "images.npy", images)
        splits[split] = (records, {"what": "coloured squares named by their colour and place"})
    finalise_dataset(out, splits, VOCAB, {"dataset": "squares", "image_size": SIDE, "text_length": LENGTH})
    return out


def _config(steps=240, **changes):
    classifier = ClassifierConfig(
        steps=steps,
        batch_size=32,
        lr=3e-3,
        lr_schedule="cosine",
        lr_warmup_steps=10,
        lr_final_factor=0.05,
        arch="strided",
        norm="batch",
        base_channels=16,
        n_downsample=2,
        n_res_blocks=0,
        min_accuracy=0.9,
    )
    # The attribute classifier's section stays the paper's (20,000 steps): the caption judge reads its own.
    return ExperimentConfig(name="test", seed=0, caption_judge=classifier, accelerator="cpu", **changes)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("judge") / "caption_judge"
    return out, train_caption_judge(data, out, _config(), progress=False)


def _val(data):
    val = ImageTextDataset(data, "val")
    images = images_to_float(torch.from_numpy(np.array(val.images)))
    texts = torch.stack([val.text(i) for i in range(len(val))])
    return images, texts


# ----------------------------------------------------------------------------- a known right answer


def test_true_texts_score_above_shuffled_texts_and_the_floor(data, trained):
    out, metrics = trained
    scorer, _ = load_judge(out, read_vocabulary(data))
    images, texts = _val(data)
    shuffled = texts.roll(1, 0)
    other = (shuffled != texts).any(1)  # the pairs whose shuffled text differs from the true one
    assert other.sum() > len(texts) // 2
    for name in ("word_accuracy", "log_p_per_word"):
        real = getattr(scorer, name)(images, texts)
        wrong = getattr(scorer, name)(images, shuffled)
        assert (real[other] > wrong[other]).float().mean() >= 0.9, name
        assert real.mean() > metrics["floor"][name] + (0.3 if name == "word_accuracy" else 1.0), name
    # the text is a function of the image: a trained judge reads it nearly always
    assert metrics["real_accuracy"]["overall"] >= 0.9
    assert metrics["ceiling"]["word_accuracy"] == metrics["real_accuracy"]["overall"]
    assert metrics["real_accuracy"]["examples"] == metrics["ceiling"]["examples"] == len(texts)
    floor = metrics["floor"]
    for name in ("word_accuracy", "log_p_per_word"):
        assert floor[name] == max(floor["grey"][name], floor["mean_image"][name])
    assert floor["mean_image"]["training_images"] == 384
    # the threshold: beat the floor, capped by the preset's
    assert metrics["min_accuracy"] == min(0.9, floor["word_accuracy"]) < 0.9 and "validation" in metrics


# ----------------------------------------------------------------------------- the definitions by hand


def _untrained(end_index=0):
    torch.manual_seed(0)
    model = Captioner(SIDE, len(VOCAB), LENGTH, end_index, embedding_dim=8, hidden=16, base_channels=4)
    return model.eval()


def test_slots_after_the_end_word_change_nothing():
    model = _untrained()
    scorer = CaptionScorer(model, VOCAB)
    images = torch.rand(3, 3, SIDE, SIDE)
    texts = torch.tensor([[2, 5, 7, 0], [4, 9, 0, 0], [3, 0, 0, 0]])
    changed = torch.tensor([[2, 5, 7, 0], [4, 9, 0, 6], [3, 0, 8, 1]])
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]])  # up to and including the end word
    for y in (texts, changed):
        with torch.no_grad():
            log_p = torch.nn.functional.log_softmax(model.logits(images, y), -1)
        chosen = log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        want = (chosen * mask).sum(1) / mask.sum(1)
        torch.testing.assert_close(scorer.log_p_per_word(images, y), want, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        scorer.log_p_per_word(images, changed), scorer.log_p_per_word(images, texts), rtol=0, atol=0
    )
    torch.testing.assert_close(scorer.word_accuracy(images, changed), scorer.word_accuracy(images, texts))
    # the control: without an end word every slot is a word, and the changed slots count
    fixed = _untrained(end_index=None)
    fixed_scorer = CaptionScorer(fixed, Vocabulary(VOCAB.words))
    assert not torch.equal(
        fixed_scorer.log_p_per_word(images, changed), fixed_scorer.log_p_per_word(images, texts)
    )


def test_scores_equal_a_hand_computation(monkeypatch):
    model = _untrained()
    half, quarter, eighth = math.log(0.5), math.log(0.25), math.log(0.125)
    # slot distributions over the first four words, the other six at probability 0 (logit -inf)
    row = {w: [eighth] * 4 for w in range(4)}
    for w in range(4):
        row[w][w] = half  # the judge's word: w with probability 1/2
        row[w][(w + 1) % 4] = quarter
    logits = torch.full((2, LENGTH, len(VOCAB)), -math.inf)
    judged = [[2, 3, 0, 1], [1, 0, 3, 2]]
    for n, words in enumerate(judged):
        for t, w in enumerate(words):
            logits[n, t, :4] = torch.tensor(row[w])
    monkeypatch.setattr(model, "logits", lambda images, texts: logits[: len(texts)])
    texts = torch.tensor([[2, 0, 0, 0], [1, 1, 3, 0]])
    # text 0: words 2, <end> (2 words): judged 2 (p 1/2), then 3 where the text has 0 (p of 0 under
    # row 3 is 1/4): accuracy 1/2, log p per word (log 1/2 + log 1/4) / 2.
    # text 1: words 1, 1, 3, <end> (4 words): judged 1 (p 1/2); 0 where 1 (p 1/4); 3 (p 1/2); 2 where
    # the text has 0 (p 1/8): accuracy 2/4, log p per word (2 log 1/2 + log 1/4 + log 1/8) / 4.
    scorer = CaptionScorer(model, VOCAB)
    images = torch.rand(2, 3, SIDE, SIDE)
    torch.testing.assert_close(scorer.word_accuracy(images, texts), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(
        scorer.log_p_per_word(images, texts),
        torch.tensor([(half + quarter) / 2, (2 * half + quarter + eighth) / 4]),
    )
    assert torch.equal(scorer.score(images, texts), scorer.word_accuracy(images, texts))


def test_bad_input_is_refused_in_one_line():
    scorer = CaptionScorer(_untrained(), VOCAB)
    with pytest.raises(VLVAEError, match="4 word slots"):
        scorer.score(torch.rand(2, 3, SIDE, SIDE), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(VLVAEError, match=r"word indices in \[0, 10\)"):
        scorer.score(torch.rand(1, 3, SIDE, SIDE), torch.tensor([[2, 10, 0, 0]]))
    with pytest.raises(VLVAEError, match="3 x 8 x 8"):
        scorer.score(torch.rand(1, 3, 16, 16), torch.tensor([[2, 0, 0, 0]]))
    with pytest.raises(VLVAEError, match="another|vocabulary"):
        CaptionScorer(_untrained(), Vocabulary(VOCAB.words[:-1], end="<end>"))


# ----------------------------------------------------------------------------- the folder


def test_the_folder_reloads_to_the_same_scores(data, trained):
    out, metrics = trained
    model, reloaded_metrics = load_caption_judge(out)
    assert reloaded_metrics == metrics and not model.training
    scorer = CaptionScorer(model, VOCAB)
    images, texts = _val(data)
    again, _ = load_judge(out, VOCAB)
    assert torch.equal(again.log_p_per_word(images, texts), scorer.log_p_per_word(images, texts))
    # the stored reference scores are those of the reloaded judge
    reference = reference_scores(again, ImageTextDataset(data, "val"), 2000)
    assert reference["ceiling"] == pytest.approx(metrics["ceiling"])
    assert reference["floor"]["word_accuracy"] == pytest.approx(metrics["floor"]["word_accuracy"])
    # a finished folder is not trained again; one of other settings is refused
    assert train_caption_judge(data, out, _config(), progress=False) == metrics
    with pytest.raises(VLVAEError, match="other settings"):
        train_caption_judge(data, out, _config(steps=10), progress=False)
    assert (out / "weights.safetensors").is_file() and CAPTION_JUDGE in (out / "classifier.json").read_text()


def test_a_fit_killed_before_its_reference_scores_scores_the_saved_weights(data, trained):
    """metrics.json is written by the fit, then again with the reference scores: a kill in between
    leaves the first; a rerun scores the saved weights (not a new network) and completes it."""
    out, metrics = trained
    path = out / "metrics.json"
    fit_only = {
        k: v for k, v in metrics.items() if k not in ("real_accuracy", "ceiling", "floor", "min_accuracy")
    }
    path.write_text(json.dumps(fit_only))
    again = train_caption_judge(data, out, _config(), progress=False)
    assert again["real_accuracy"]["overall"] == pytest.approx(metrics["real_accuracy"]["overall"])
    assert again["floor"]["log_p_per_word"] == pytest.approx(metrics["floor"]["log_p_per_word"])
    assert json.loads(path.read_text()) == again


def test_a_judge_trains_under_its_own_precision(data, tmp_path):
    """``caption_judge.precision`` names the judge's own precision: ``32-true`` named explicitly trains
    the very weights the run's float32 gives (``run``, the default), ``bf16-mixed`` trains other
    weights under the run's float32, and the fit records the precision it ran under and classifier.json
    the setting (none for ``run``, as folders written before the key record none)."""
    folders = {}
    for name in ("run", "32-true", "bf16-mixed"):
        cfg = _config(steps=20)
        cfg = replace(cfg, caption_judge=replace(cfg.caption_judge, precision=name))
        out = tmp_path / name
        metrics = train_caption_judge(data, out, cfg, progress=False)
        folders[name] = load_file(out / "weights.safetensors")
        assert metrics["hardware"]["precision"] == ("32-true" if name == "run" else name)
        recorded = json.loads((out / "classifier.json").read_text())["classifier"]
        assert recorded.get("precision") == (None if name == "run" else name)
    assert folders["run"].keys() == folders["bf16-mixed"].keys()
    assert all(torch.equal(folders["run"][k], folders["32-true"][k]) for k in folders["run"])
    assert any(not torch.equal(folders["run"][k], folders["bf16-mixed"][k]) for k in folders["run"])
