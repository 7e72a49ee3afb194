"""The attribute classifier used for correctness (paper §4, §5.4)."""

import pytest
import torch

from vlvae.models import AttributeClassifier
from vlvae.models.classifier import RelationalSlotClassifier


def test_slot_logit_shapes_and_condition_changes_output():
    torch.manual_seed(0)
    clf = AttributeClassifier(
        16, [2, 8, 2, 3, 2, 8, 2, 3], n_conditions=4, base_channels=4, n_res_blocks=1
    ).eval()
    x = torch.rand(1, 3, 16, 16).expand(4, -1, -1, -1)
    logits = clf(x, torch.arange(4))
    assert [t.shape for t in logits] == [(4, n) for n in (2, 8, 2, 3, 2, 8, 2, 3)]
    # same image, four relations: the relation must reach the output
    assert (logits[1][0] - logits[1][1]).abs().max() > 1e-4


def test_multilabel_mode_without_condition_trains():
    torch.manual_seed(1)
    clf = AttributeClassifier(16, [2] * 5, n_conditions=0, base_channels=4, n_res_blocks=1)
    logits = clf(torch.rand(3, 3, 16, 16))
    loss = sum(torch.nn.functional.cross_entropy(t, torch.zeros(3, dtype=torch.long)) for t in logits)
    loss.backward()
    assert all(p.grad is not None for p in clf.parameters())


def test_conditioned_classifier_needs_condition():
    clf = AttributeClassifier(16, [2], n_conditions=4, base_channels=4, n_res_blocks=1)
    with pytest.raises(ValueError, match="condition"):
        clf(torch.rand(2, 3, 16, 16))


def test_relational_classifier_routes_objects_by_relation():
    """left/right and front/behind read the same two objects in opposite orders (exact identities)."""
    torch.manual_seed(0)
    clf = RelationalSlotClassifier(16, [2, 8, 2, 3] * 2, 4, base_channels=4, n_res_blocks=1).eval()
    x = torch.rand(3, 3, 16, 16)
    out = {r: clf(x, torch.full((3,), r)) for r in range(4)}
    right, left, front, behind = range(4)
    for i in range(4):
        torch.testing.assert_close(out[left][i], out[right][i + 4])
        torch.testing.assert_close(out[left][i + 4], out[right][i])
        torch.testing.assert_close(out[front][i], out[behind][i + 4])
        torch.testing.assert_close(out[front][i + 4], out[behind][i])
    for slots in out.values():
        for logp in slots:
            torch.testing.assert_close(logp.logsumexp(-1), torch.zeros(3), atol=1e-5, rtol=0)


def test_relational_classifier_front_mixture_is_exact():
    """With the front logit forced to +/- large, front/behind copy the left/right readings."""
    torch.manual_seed(1)
    clf = RelationalSlotClassifier(16, [2, 8, 2, 3] * 2, 4, base_channels=4, n_res_blocks=1).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        clf.front.weight.zero_()
        clf.front.bias.fill_(50.0)  # the left object is surely in front
    left = clf(x, torch.full((2,), 1))
    front = clf(x, torch.full((2,), 2))
    for a, b in zip(left, front):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_relational_classifier_front_is_the_closed_form_mixture():
    """P(O1 word | front) = p * P_left(word) + (1 - p) * P_right(word), p = P(left object in front)."""
    torch.manual_seed(2)
    clf = RelationalSlotClassifier(16, [2, 8, 2, 3] * 2, 4, base_channels=4, n_res_blocks=1).eval()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        h = clf.hidden(clf.encoder(x))
        p = torch.sigmoid(clf.front(h))
        expected = [
            p * clf.heads[i](h).softmax(-1) + (1 - p) * clf.heads[i + 4](h).softmax(-1) for i in range(4)
        ]
        front = clf(x, torch.full((3,), RelationalSlotClassifier.FRONT))
    for i in range(4):
        torch.testing.assert_close(front[i].exp(), expected[i], atol=1e-6, rtol=1e-5)
