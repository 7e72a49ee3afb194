"""GRU text encoder and autoregressive GRU text decoder (Cremer & Kushman 2018, §5.1).

Encoder: word embeddings (100-d, docs/design.md §2.1) read by a GRU (Cho et al. 2014,
https://arxiv.org/abs/1406.1078) with 200 hidden units; the final hidden state,
projected linearly, is the encoding.

Decoder p(y|z): a GRU cell unrolled over the words. Each step sees the previous
word (a begin-of-sentence index at step 0), the previous hidden state and the
shared decoder's output; the hidden state starts from a projection of that
output and is clamped to [−2, 2] (docs/design.md §2.1). Every hidden state goes through a
three-layer residual MLP head with batch norm and dropout to word logits.

Timing (this 2-core CPU, batch 64, 9 words, forward + backward): ``nn.GRU``
8.6 ms vs a ``GRUCell`` loop 9.7 ms, so the encoder uses the fused ``nn.GRU``;
the decoder needs the loop anyway for the per-step clamp and greedy decoding.

Mixed precision: the decoder's word logits are returned in float32 (the GRU and the head run in
whatever autocast chooses), so the log-softmax and the sum over words that make log p(y|z)
(:meth:`vlvae.models.VLVAE.log_py`) are float32 too (docs/mixed_precision.md).
"""

from __future__ import annotations

import torch
from torch import LongTensor, Tensor, nn

from vlvae.objectives import float32

__all__ = ["TextEncoder", "TextDecoder", "text_mask", "end_after_end"]

HIDDEN_CLAMP = 2.0


def text_mask(y: LongTensor, end_index: int | None) -> Tensor:
    """Which word slots of texts ``y`` (..., L) belong to them (docs/design.md §11): every slot up to
    and including the first end word; with ``end_index`` None (texts of fixed length), every slot.

    Returns a float tensor of y's shape (1 inside the text, 0 after it).

    Example:
        >>> text_mask(torch.tensor([[4, 0, 0, 0], [5, 6, 7, 8]]), end_index=0)
        tensor([[1., 1., 0., 0.],
                [1., 1., 1., 1.]])
    """
    if end_index is None:
        return torch.ones(y.shape, dtype=torch.float32, device=y.device)
    ended = (y == end_index).long().cumsum(-1)
    # a slot is inside the text until the one holding the first end word, inclusive
    before = torch.cat([torch.zeros_like(ended[..., :1]), ended[..., :-1]], -1)
    return (before == 0).float()


def end_after_end(words: LongTensor, end_index: int | None) -> LongTensor:
    """Decoded texts (..., L) with every word after the first end word replaced by the end word, so
    that a decoded text reads as what it is (unchanged with ``end_index`` None).

    Example:
        >>> end_after_end(torch.tensor([[4, 0, 6, 7]]), 0)
        tensor([[4, 0, 0, 0]])
    """
    if end_index is None:
        return words
    return torch.where(text_mask(words, end_index) > 0, words, torch.full_like(words, end_index))


class TextEncoder(nn.Module):
    """Words -> encoding: embedding, GRU, linear map of the final hidden state.

    Arguments:
        vocab_size: number of words.
        embedding_dim: size of the word embeddings.
        hidden: GRU hidden size.
        out_features: size of the encoding.

    Example:
        >>> enc = TextEncoder(5, 4, 6, 8)
        >>> enc(torch.randint(5, (2, 9))).shape
        torch.Size([2, 8])
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.gru = nn.GRU(embedding_dim, hidden, batch_first=True)
        self.project = nn.Linear(hidden, out_features)

    def forward(self, y: LongTensor) -> Tensor:
        """y: (batch, L) word indices -> (batch, out_features)."""
        _, h = self.gru(self.embedding(y))
        return self.project(h[-1])


class _ResidualHead(nn.Module):
    """h + (linear, batch norm, ReLU, dropout) twice, then a linear map to the vocabulary:
    three linear layers with a residual connection, batch norm and dropout (§5.1)."""

    def __init__(self, hidden: int, vocab_size: int, dropout: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, h: Tensor) -> Tensor:
        """h: (n, hidden) -> logits (n, vocab_size)."""
        return self.out(h + self.block(h))


class TextDecoder(nn.Module):
    """Autoregressive p(y|z) given the shared decoder's output.

    Arguments:
        context_dim: size of the shared decoder's output.
        vocab_size: number of words; index ``vocab_size`` is the begin-of-sentence input.
        embedding_dim: size of the word embeddings.
        hidden: GRU hidden size.
        length: words per text.
        dropout: dropout rate of the head.

    Example:
        >>> dec = TextDecoder(8, 5, 4, 6, 3, 0.5).eval()
        >>> h = torch.randn(2, 8)
        >>> dec.logits(h, torch.randint(5, (2, 3))).shape
        torch.Size([2, 3, 5])
        >>> dec.generate(h)[0].shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        context_dim: int,
        vocab_size: int,
        embedding_dim: int,
        hidden: int,
        length: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.length = length
        self.embedding = nn.Embedding(vocab_size + 1, embedding_dim)
        self.init_hidden = nn.Linear(context_dim, hidden)
        self.cell = nn.GRUCell(embedding_dim + context_dim, hidden)
        self.head = _ResidualHead(hidden, vocab_size, dropout)

    def _start(self, h: Tensor) -> tuple[Tensor, Tensor]:
        state = self.init_hidden(h).clamp(-HIDDEN_CLAMP, HIDDEN_CLAMP)
        bos = torch.full((h.shape[0],), self.vocab_size, dtype=torch.long, device=h.device)
        return state, bos

    def _step(self, word: LongTensor, h: Tensor, state: Tensor) -> Tensor:
        inputs = torch.cat([self.embedding(word), h], dim=-1)
        return self.cell(inputs, state).clamp(-HIDDEN_CLAMP, HIDDEN_CLAMP)

    def logits(self, h: Tensor, y: LongTensor) -> Tensor:
        """Teacher-forced word logits.

        Arguments:
            h: (batch, context_dim) shared decoder output.
            y: (batch, L) the words; step t sees word t − 1 (BOS at t = 0).

        Returns:
            (batch, L, vocab_size) float32 logits of p(y_t | y_<t, z) (float64 if the model is).
        """
        state, word = self._start(h)
        states = []
        for t in range(y.shape[1]):
            state = self._step(word, h, state)
            states.append(state)
            word = y[:, t]
        states = torch.stack(states, dim=1)
        return float32(self.head(states.flatten(0, 1))).view(*y.shape, self.vocab_size)

    def generate(self, h: Tensor, greedy: bool = True) -> tuple[LongTensor, Tensor]:
        """Decode words one at a time, feeding each back in.

        Arguments:
            h: (batch, context_dim) shared decoder output.
            greedy: take the most probable word at each step, else sample it.

        Returns:
            words (batch, length) and their step-wise float32 logits (batch, length, vocab_size).
        """
        state, word = self._start(h)
        words, logits = [], []
        for _ in range(self.length):
            state = self._step(word, h, state)
            step_logits = float32(self.head(state))
            if greedy:
                word = step_logits.argmax(-1)
            else:
                word = torch.distributions.Categorical(logits=step_logits).sample()
            words.append(word)
            logits.append(step_logits)
        return torch.stack(words, dim=1), torch.stack(logits, dim=1)
