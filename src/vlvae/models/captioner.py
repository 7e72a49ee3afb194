"""The caption judge's network: an image-conditioned autoregressive text model p_judge(y | x).

A judge that needs nothing but images and texts (any data set): trained on real training pairs
only (:mod:`vlvae.training.caption_judge`), it scores a generated image x̂ against a text y by how
well it predicts y from x̂:

* the per-word log-likelihood  (1 / |y|) Σ_{t ≤ |y|} log p_judge(y_t | y_<t, x̂), and
* the teacher-forced word accuracy  (1 / |y|) Σ_{t ≤ |y|} [argmax_w p_judge(w | y_<t, x̂) = y_t],

where |y| counts the words of the text: every slot up to and including its first end word for
texts of variable length (:func:`vlvae.models.text.text_mask`; predicting where a text stops is
part of it), every slot for texts of fixed length. The slots after the end word are in no score,
and, the model being autoregressive, they change none of the text's own predictions either.

Architecture: the image encoder of :mod:`vlvae.models.image` (:func:`make_image_encoder`, the same
family and widths as the attribute classifiers of :mod:`vlvae.models.classifier`) to a feature
vector; the GRU's start state is tanh(linear(ReLU(feature))); at step t the GRU (Cho et al. 2014,
https://arxiv.org/abs/1406.1078) reads the embedding of word t − 1 (a begin-of-sentence index,
``vocab_size``, at t = 0) and a linear map of its state gives the logits of word t — the "Show and
Tell" captioner (Vinyals et al. 2015, https://arxiv.org/abs/1411.4555) with the image in the start
state.
"""

from __future__ import annotations

import torch
from torch import LongTensor, Tensor, nn

from vlvae.errors import VLVAEError
from vlvae.models.image import make_image_encoder
from vlvae.models.text import text_mask

__all__ = ["Captioner", "word_scores", "FEATURES"]

#: Size of the image feature vector the text decoder is conditioned on.
FEATURES = 256


def word_scores(logits: Tensor, texts: LongTensor, end_index: int | None) -> tuple[Tensor, Tensor]:
    """(per-word log-likelihood (N,), teacher-forced word accuracy (N,)) of texts (N, L) under
    teacher-forced logits (N, L, V), both averaged over each text's words (:func:`text_mask`).

    Example:
        >>> logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]]]))
        >>> log_p, accuracy = word_scores(logits, torch.tensor([[1, 0, 2]]), end_index=0)
        >>> round(float(log_p.exp()), 4), float(accuracy)  # words 1 then the end word 0: sqrt(.25 x .2)
        (0.2236, 0.0)
    """
    mask = text_mask(texts, end_index).to(logits.dtype)
    log_p = logits.log_softmax(-1).gather(-1, texts.unsqueeze(-1)).squeeze(-1)
    hits = (logits.argmax(-1) == texts).to(logits.dtype)
    words = mask.sum(-1)
    # masked with where, not a product: a slot after the end word may hold any value, even -inf
    log_p = torch.where(mask > 0, log_p, torch.zeros_like(log_p))
    return log_p.sum(-1) / words, (hits * mask).sum(-1) / words


class Captioner(nn.Module):
    """Image -> autoregressive word logits: the caption judge p_judge(y | x).

    Arguments:
        image_size: side of the square input images.
        vocab_size: number of words V; index V is the begin-of-sentence input.
        text_length: word slots L per text.
        end_index: the end word of texts of variable length (None: every slot is a word).
        embedding_dim: size of the word embeddings.
        hidden: GRU hidden size.
        base_channels, n_downsample, n_res_blocks: the image encoder's sizes.
        arch, norm: the encoder's family (:data:`vlvae.models.image.ARCHITECTURES`) and its normalisation.

    Example:
        >>> judge = Captioner(16, vocab_size=6, text_length=4, end_index=0, base_channels=4)
        >>> images, texts = torch.rand(2, 3, 16, 16), torch.tensor([[2, 3, 0, 0], [4, 5, 1, 0]])
        >>> judge.logits(images, texts).shape
        torch.Size([2, 4, 6])
        >>> judge.word_log_probs(images, texts).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        image_size: int,
        vocab_size: int,
        text_length: int,
        end_index: int | None,
        embedding_dim: int = 64,
        hidden: int = 128,
        base_channels: int = 32,
        n_downsample: int = 2,
        n_res_blocks: int = 2,
        arch: str = "cyclegan",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if vocab_size < 1 or text_length < 1:
            raise VLVAEError(
                f"a caption judge needs at least one word and one slot (got {vocab_size} words, "
                f"{text_length} slots); check the data set's vocab.json and text_length"
            )
        if end_index is not None and not 0 <= end_index < vocab_size:
            raise VLVAEError(f"end word index {end_index} is outside the vocabulary of {vocab_size} words")
        self.arch = arch
        self.image_size, self.vocab_size, self.text_length = image_size, vocab_size, text_length
        self.end_index = end_index
        self.encoder = make_image_encoder(
            arch, image_size, 3, base_channels, n_downsample, n_res_blocks, FEATURES, norm
        )
        self.start = nn.Sequential(nn.ReLU(), nn.Linear(FEATURES, hidden), nn.Tanh())
        self.embedding = nn.Embedding(vocab_size + 1, embedding_dim)
        self.gru = nn.GRU(embedding_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def check_texts(self, texts: LongTensor, n: int | None = None) -> None:
        """Raise one clear :class:`~vlvae.errors.VLVAEError` unless ``texts`` are (n, L) word indices of
        this judge's vocabulary."""
        if texts.dim() != 2 or texts.shape[1] != self.text_length or (n is not None and len(texts) != n):
            raise VLVAEError(
                f"the caption judge scores texts of {self.text_length} word slots, one per image; got "
                f"texts of shape {tuple(texts.shape)} for {n} images (texts of another data set?)"
            )
        if texts.dtype not in (torch.int64, torch.int32) or (
            texts.numel() and (int(texts.min()) < 0 or int(texts.max()) >= self.vocab_size)
        ):
            raise VLVAEError(
                f"the caption judge's texts are word indices in [0, {self.vocab_size}); got {texts.dtype} "
                f"values outside them (texts of another vocabulary?)"
            )

    def logits(self, images: Tensor, texts: LongTensor) -> Tensor:
        """Teacher-forced logits: images float (N, 3, H, W) in [0, 1], texts (N, L) -> (N, L, V), slot t
        given the image and words 0 … t − 1."""
        self.check_texts(texts, len(images))
        texts = texts.long()
        state = self.start(self.encoder(images)).unsqueeze(0)
        bos = torch.full_like(texts[:, :1], self.vocab_size)
        inputs = self.embedding(torch.cat([bos, texts[:, :-1]], 1))
        outputs, _ = self.gru(inputs, state)
        return self.head(outputs)

    def forward(self, images: Tensor, texts: LongTensor) -> Tensor:
        """The teacher-forced logits (:meth:`logits`)."""
        return self.logits(images, texts)

    def word_log_probs(self, images: Tensor, texts: LongTensor) -> Tensor:
        """log p_judge(y_t | y_<t, x) of every slot: (N, L), slots after an end word included (mask them
        with :func:`vlvae.models.text.text_mask`)."""
        logits = self.logits(images, texts)
        return logits.log_softmax(-1).gather(-1, texts.long().unsqueeze(-1)).squeeze(-1)
