"""Where Two Objects correctness is lost, slot by slot: the judge's reading of real test images, of the
VLVAE's reconstructions and of images generated from the test texts by each text posterior.

Table 1's correctness averages eight slots (each object's size, colour, material and shape). This
splits it: for each source, the fraction of the test texts' words in each attribute that the judge
reads back (both objects together), and the shape slot split by the object's size word, since small
objects are where the judge itself is weakest (docs/design.md §8.2). Real images give the ceiling;
the gap from a source to it is what its images lose. The column ``swapped`` reads each image against
its text with the two objects' descriptions exchanged and the relation word kept (the mirrored
scene): an image that draws the right objects in each other's places scores high there and low in
the other columns, one that draws the wrong objects low in both.

The row ``caption`` is not the judge's: it is the VLVAE's own text decoder reading z ~ q(z|x) of the
real image (greedy words), each slot compared with the true text. It tells whether z holds an
attribute at all: an attribute the captions name but the reconstructions do not show is lost in the
image decoder, one both miss is not in z. A caption may describe the scene with the objects in the
other order and the opposite relation word ("A left of B" as "B right of A"); such a caption is read
against the text with its objects exchanged.

The row ``probe`` (``--probe-train N``) asks the same of z without either decoder: a small MLP fitted
on the means of q(z|x) of N training images (and each text's relation word) to name the eight
attribute words, then read on the test images. Captions bounded by a weak text decoder would read
higher here. One fitted network is a lower bound on what z's means hold: an attribute it names is
there, one it names at chance is at least not there in a form such a network finds.

Usage:
    python benchmarks/slot_correctness.py --run RUN --classifier OUT/classifier --data OUT/data \
        [--examples 1000] [--seed 0] [--json slots.json] [--pool 2 --pool 4] [--probe-train 20000]

Each source is drawn once (z ~ q(z|x) for reconstructions, z ~ q(z|y) for the posteriors, as Table 1
draws them), with torch seeded by ``--seed``; the judge is told each text's relation word.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import vlvae
from vlvae.data.dataset import ImageTextDataset, images_to_float
from vlvae.data.vocabulary import Vocabulary
from vlvae.datasets.two_objects import DATASET
from vlvae.datasets.two_objects.judge import (
    ATTRIBUTE_SLOTS,
    RELATION_SLOT,
    load_classifier,
    predict_slots,
    slot_targets,
)

#: Slot j of a text read through :func:`swap_objects`: the slot of the swapped text that holds it.
SWAP = [5, 6, 7, 8, 4, 0, 1, 2, 3]
#: Attribute -> its slot in each object (O1, O2) of a nine-word text.
ATTRIBUTES = {"size": (0, 5), "colour": (1, 6), "material": (2, 7), "shape": (3, 8)}


def slot_hits(classifier, vocab: Vocabulary, images: torch.Tensor, texts: torch.Tensor) -> np.ndarray:
    """(N, 9) bool: whether the judge reads each attribute slot's word of each text in its image
    (the relation slot is the judge's input and is left False)."""
    words = [vocab.decode(t) for t in texts]
    relations = torch.tensor([vocab.slots[RELATION_SLOT].index(w[RELATION_SLOT]) for w in words])
    predicted = predict_slots(classifier, images, relations)
    hits = np.zeros((len(words), 9), dtype=bool)
    for j, slot in enumerate(ATTRIBUTE_SLOTS):
        hits[:, slot] = [vocab.slots[slot][int(predicted[i, j])] == w[slot] for i, w in enumerate(words)]
    return hits


def captions(model, x: torch.Tensor, length: int, batch: int = 250) -> torch.Tensor:
    """(N, length) word indices: the VLVAE's greedy caption of one z ~ q(z|x) per image."""
    words = []
    with torch.no_grad():
        for lo in range(0, len(x), batch):
            words.append(model.generate_text(model.image_posterior(x[lo : lo + batch]).sample()))
    return torch.cat(words)[:, :length]


def caption_hits(
    words: torch.Tensor, texts: torch.Tensor, vocab: Vocabulary, opposite: dict[str, str]
) -> np.ndarray:
    """(N, 9) bool: whether each caption has each attribute slot's word of the text (the relation slot
    left False, as in :func:`slot_hits`). A caption whose relation word is the opposite of the text's
    describes the same scene with the objects in the other order: it is read against
    :func:`swap_objects` of the text, and its hits are put back in the text's slots."""
    flipped = torch.tensor(
        [
            opposite.get(vocab.decode(t)[RELATION_SLOT]) == vocab.decode(w)[RELATION_SLOT]
            for t, w in zip(texts, words)
        ],
        dtype=torch.bool,
    )
    hits = torch.where(flipped[:, None], (words == swap_objects(texts))[:, SWAP], words == texts).numpy()
    hits[:, RELATION_SLOT] = False
    return hits


def judge_targets(texts: torch.Tensor, vocab: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
    """Each text's relation word and eight attribute words as the judge's classes
    (:func:`vlvae.datasets.two_objects.judge.slot_targets`): (N,) and (N, 8)."""
    relations, attributes = zip(*(slot_targets(vocab, vocab.decode(t)) for t in texts))
    return torch.tensor(relations), torch.tensor(attributes)


def posterior_means(model, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """(N, latent) the mean of q(z|x) for each image (the model in eval mode)."""
    with torch.no_grad():
        return torch.cat([model.image_posterior(x[lo : lo + batch]).mean for lo in range(0, len(x), batch)])


def split_means(model, data: ImageTextDataset, n: int, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """The means of q(z|x) of a split's first ``n`` images and their texts, read ``batch`` at a time
    (so that 20,000 images never sit in memory as floats at once)."""
    means, texts = [], []
    for lo in range(0, n, batch):
        items = [data[i] for i in range(lo, min(n, lo + batch))]
        means.append(posterior_means(model, images_to_float(torch.stack([it["image"] for it in items]))))
        texts.append(torch.stack([it["text"] for it in items]))
    return torch.cat(means), torch.cat(texts)


def fit_probe(
    features: torch.Tensor,
    relations: torch.Tensor,
    targets: torch.Tensor,
    sizes: list[int],
    epochs: int = 40,
    hidden: int = 512,
    seed: int = 0,
):
    """A two-hidden-layer MLP from features (standardised) and the relation word (one-hot) to the
    attribute slots' words, fitted with Adam and a cross-entropy per slot. Returns ``read(features,
    relations, targets) -> (N, 9) bool hits`` (the relation slot left False, as in :func:`slot_hits`).

    Args:
        features: (N, D) training features (the means of q(z|x)).
        relations, targets: their texts' relation words (N,) and attribute words (N, 8) as the
            judge's classes (:func:`judge_targets`).
        sizes: the number of words in each of the nine slots.
    """
    generator = torch.Generator().manual_seed(seed)
    centre, scale = features.mean(0), features.std(0).clamp_min(1e-6)
    n_relations = sizes[RELATION_SLOT]
    heads = [sizes[s] for s in ATTRIBUTE_SLOTS]

    def inputs(f, r):
        return torch.cat(((f - centre) / scale, torch.nn.functional.one_hot(r, n_relations).float()), 1)

    with torch.random.fork_rng():  # the initial weights from the seed, the caller's RNG untouched
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(features.shape[1] + n_relations, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, sum(heads)),
        )
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    x = inputs(features, relations)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for lo in range(0, len(x), 256):
            batch = order[lo : lo + 256]
            logits = net(x[batch]).split(heads, 1)
            loss = sum(
                torch.nn.functional.cross_entropy(out, targets[batch, j]) for j, out in enumerate(logits)
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

    def read(f: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            logits = net(inputs(f, r)).split(heads, 1)
        hits = np.zeros((len(f), 9), dtype=bool)
        for j, (out, slot) in enumerate(zip(logits, ATTRIBUTE_SLOTS)):
            hits[:, slot] = (out.argmax(1) == t[:, j]).numpy()
        return hits

    return read


def swap_objects(texts: torch.Tensor) -> torch.Tensor:
    """Nine-word texts with the descriptions of O1 (slots 0-3) and O2 (slots 5-8) exchanged, the relation
    (slot 4) kept: the text of the mirrored scene."""
    return torch.cat((texts[:, 5:9], texts[:, 4:5], texts[:, 0:4]), 1)


def summarise(hits: np.ndarray, small: np.ndarray) -> dict[str, float]:
    """Per attribute (both objects), the overall fraction (Table 1's correctness) and shape by object size.

    Args:
        hits: (N, 9) from :func:`slot_hits`.
        small: (N, 2) bool, whether object 1 and object 2 are described as small.
    """
    out = {name: float(hits[:, list(slots)].mean()) for name, slots in ATTRIBUTES.items()}
    out["all"] = float(hits[:, list(ATTRIBUTE_SLOTS)].mean())
    shape = hits[:, list(ATTRIBUTES["shape"])]
    out["shape|small"] = float(shape[small].mean()) if small.any() else float("nan")
    out["shape|large"] = float(shape[~small].mean()) if (~small).any() else float("nan")
    return out


def pooled(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Real images with their detail removed: each ``factor`` × ``factor`` block averaged, then bilinear
    back to full size. Read by the judge, they tell how much of a slot survives a given blur."""
    small = torch.nn.functional.avg_pool2d(x, factor)
    return torch.nn.functional.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)


def sources(model, posteriors: dict, x: torch.Tensor, y: torch.Tensor, batch: int = 250) -> dict:
    """Source name -> generated images (N, 3, H, W): the real images, reconstructions, each posterior's."""
    out = {"real": x, "reconstruction": []}
    out.update({name: [] for name in posteriors})
    with torch.no_grad():
        for lo in range(0, len(x), batch):
            xs, ys = x[lo : lo + batch], y[lo : lo + batch]
            out["reconstruction"].append(model.image_mean(model.image_posterior(xs, ys).sample()))
            for name, q in posteriors.items():
                out[name].append(model.image_mean(q(ys).sample()))
    return {k: v if k == "real" else torch.cat(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--classifier", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--pool", type=int, action="append", default=[], help="also read real images pooled by this factor"
    )
    parser.add_argument(
        "--probe-train",
        type=int,
        default=0,
        help="fit an MLP probe on the means of q(z|x) of this many training images (0: no probe row)",
    )
    args = parser.parse_args(argv)

    inference = vlvae.load(args.run, classifier=args.classifier)
    model = inference.model.eval()
    posteriors = {}
    for name in ("true", "agg"):
        try:
            posteriors[f"q_{name}"] = inference.text_posterior(name)
        except vlvae.inference.MissingStage as missing:
            print(f"skipped q_{name}: {missing}")
    classifier, _ = load_classifier(args.classifier)
    data = ImageTextDataset(args.data, args.split)
    n = min(args.examples, len(data))
    items = [data[i] for i in range(n)]
    x = images_to_float(torch.stack([it["image"] for it in items]))
    y = torch.stack([it["text"] for it in items])
    small = np.array(
        [[data.vocab.decode(t)[s] == "small" for s in ATTRIBUTES["size"]] for t in y], dtype=bool
    )
    torch.manual_seed(args.seed)
    table = {}
    generated = sources(model, posteriors, x, y)
    generated.update({f"real, pooled {f}×": pooled(x, f) for f in args.pool})
    for name, images in generated.items():
        table[name] = summarise(slot_hits(classifier, data.vocab, images, y), small)
        swapped = slot_hits(classifier, data.vocab, images, swap_objects(y))
        table[name]["swapped"] = float(swapped[:, list(ATTRIBUTE_SLOTS)].mean())
    torch.manual_seed(args.seed)
    words = captions(model, x, y.shape[1])
    table["caption"] = summarise(caption_hits(words, y, data.vocab, DATASET.opposite_relations), small)
    table["caption"]["swapped"] = float("nan")
    if args.probe_train:
        train = ImageTextDataset(args.data, "train")
        train_means, train_y = split_means(model, train, min(args.probe_train, len(train)))
        sizes = [len(s) for s in data.vocab.slots]
        read = fit_probe(train_means, *judge_targets(train_y, data.vocab), sizes, seed=args.seed)
        table["probe"] = summarise(read(posterior_means(model, x), *judge_targets(y, data.vocab)), small)
        table["probe"]["swapped"] = float("nan")
    columns = ["all", *ATTRIBUTES, "shape|small", "shape|large", "swapped"]
    print(
        f"{n} {args.split} examples, seed {args.seed}; % of words the judge (caption: the VLVAE) reads back"
    )
    print("| source | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{100 * row[c]:.1f}" for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps({"examples": n, "seed": args.seed, "table": table}, indent=1))
    return table


if __name__ == "__main__":
    main()
