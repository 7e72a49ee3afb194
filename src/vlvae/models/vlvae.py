"""The Vision-Language VAE (Cremer & Kushman 2018, §2, Fig. 2, §5.1).

Generative model z ~ N(0, I); x ~ p(x|z) (constrained Beta over mapped pixels);
y ~ p(y|z) (autoregressive GRU). Both decoders read one shared decoder's output.
Inference uses the image only, q(z|x) ("marginal inference"), or image and text,
q(z|x, y), with ``joint_inference`` (§6, Fig. 7). Trained with the weighted,
KL-annealed ELBO of Eqns 1-2 (:func:`vlvae.objectives.vlvae_elbo`).

Methods that take z accept any leading shape ``(*lead, latent)`` (e.g.
``(k, batch, latent)`` for k importance samples): z is flattened through the
decoders and results are reshaped to ``lead``; x and y must broadcast against
``(*lead, 3, H, W)`` and ``(*lead, L)`` — an image batch ``(batch, 3, H, W)``
broadcasts against z of shape ``(k, batch, latent)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import LongTensor, Tensor, nn
from torch.distributions import Distribution, Independent
from zuko.distributions import DiagNormal

from vlvae.models.config import ModelConfig
from vlvae.models.image import make_image_decoder
from vlvae.models.likelihoods import ConstrainedBeta, map_pixels, unmap_pixels
from vlvae.models.posteriors import ImagePosterior
from vlvae.models.shared import SharedDecoder
from vlvae.models.text import TextDecoder, end_after_end, text_mask
from vlvae.objectives import kl_normal_standard, vlvae_elbo

__all__ = ["VLVAE", "VLVAEOutput"]


@dataclass
class VLVAEOutput:
    """What one training step of the VLVAE computes; every field a scalar (batch mean).

    Attributes:
        loss: −(weighted objective of Eqns 1-2), to minimise.
        elbo: the unweighted ELBO of log p(x, y) (Eqn 1).
        log_px: E_q log p(x|z), unweighted (one sample).
        log_py: E_q log p(y|z), unweighted (one sample).
        kl: KL(q(z|x) || N(0, I)), analytic.
    """

    loss: Tensor
    elbo: Tensor
    log_px: Tensor
    log_py: Tensor
    kl: Tensor


class VLVAE(nn.Module):
    """Joint latent-variable model of images and text.

    Arguments:
        config: the model configuration.

    Example:
        >>> cfg = ModelConfig(image_size=16, base_channels=4, latent_dim=4)
        >>> model = VLVAE(cfg)
        >>> out = model(torch.rand(2, 3, 16, 16), torch.randint(19, (2, 9)))
        >>> out.loss.shape
        torch.Size([])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.posterior = ImagePosterior(config)
        self.shared_decoder = SharedDecoder(config.latent_dim, config.shared_hidden, config.decoder_dim)
        self.image_decoder = make_image_decoder(
            config.arch,
            config.decoder_dim,
            config.image_size,
            config.image_channels,
            config.base_channels,
            config.n_downsample,
            config.n_res_blocks,
            config.norm,
            config.coord_channels,
            config.broadcast_side,
            config.refine_channels,
        )
        self.text_decoder = TextDecoder(
            config.decoder_dim,
            config.vocab_size,
            config.embedding_dim,
            config.text_hidden,
            config.text_length,
            config.dropout,
        )
        self.register_buffer("_zeros", torch.zeros(config.latent_dim))

    def image_posterior(self, x: Tensor, y: LongTensor | None = None) -> Distribution:
        """q(z|x) (q(z|x, y) with joint inference): x (batch, 3, H, W) in [0, 1], y (batch, L).

        Returns a diagonal Gaussian (``Independent(Normal, 1)``), batch (batch,), event (latent,).
        """
        return self.posterior(x, y)

    @torch.no_grad()
    def posterior_table(
        self, images, texts: LongTensor | None = None, batch_size: int = 256
    ) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z|x) for every image of a set, encoded in batches.

        Arguments:
            images: uint8 (N, H, W, 3) (a numpy array or memory map, or a tensor).
            texts: (N, L), needed only with joint inference (q(z|x, y)).
            batch_size: images encoded at a time.

        Returns:
            means, logvars: (N, latent) each, on the model's device.
        """
        device = self._zeros.device
        means, logvars = [], []
        for lo in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[lo : lo + batch_size])).to(device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            y = None if texts is None else texts[lo : lo + batch_size].to(device)
            mean, logvar = self.posterior.encode(x, y)
            means.append(mean)
            logvars.append(logvar)
        return torch.cat(means), torch.cat(logvars)

    def standard_prior(self) -> Distribution:
        """p(z) = N(0, I), event (latent,): the fixed prior of stage 1 (the learned prior q_φ(z) is
        a stage of its own, :class:`vlvae.models.posteriors.AggregatePrior`)."""
        return DiagNormal(self._zeros, torch.ones_like(self._zeros))

    def _shared(self, z: Tensor) -> tuple[Tensor, torch.Size]:
        return self.shared_decoder(z.reshape(-1, z.shape[-1])), z.shape[:-1]

    def _alpha(self, z: Tensor) -> Tensor:
        return self._alpha_of(*self._shared(z))

    def _alpha_of(self, h: Tensor, lead: torch.Size) -> Tensor:
        alpha = self.image_decoder(h)
        return alpha.view(*lead, *alpha.shape[1:])

    def image_likelihood(self, z: Tensor) -> Distribution:
        """p(x|z) over *mapped* pixels: z (*lead, latent) -> constrained Beta, batch lead, event (3, H, W)."""
        return self._beta(self._alpha(z))

    def _beta(self, alpha: Tensor) -> Distribution:
        return Independent(ConstrainedBeta(alpha, self.config.beta_concentration), 3)

    def map_pixels(self, x: Tensor) -> Tensor:
        """Pixels in [0, 1] -> [pixel_low, pixel_high], where p(x|z) is evaluated (same shape)."""
        return map_pixels(x, self.config.pixel_low, self.config.pixel_high)

    def log_px(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) of the mapped pixels: x in [0, 1] broadcasting against (*lead, 3, H, W) -> lead."""
        return self.image_likelihood(z).log_prob(self.map_pixels(x))

    def log_px_decoder_only(self, x: Tensor) -> Tensor:
        """log p(x|z) (batch,) at one z ~ q(z|x) per image, differentiable in the image decoder alone.

        z and the shared decoder's features are computed without a graph, so the gradient reaches
        the image decoder's parameters only. It is the gradient of Eqn 1's weighted objective with
        respect to those parameters (neither the KL term nor log p(y|z) depends on them) with the
        encoder and the shared decoder held: stage 1's image-decoder steps (``stage1.decoder_steps``,
        docs/design.md §8.2).
        """
        with torch.no_grad():
            h, lead = self._shared(self.image_posterior(x).sample())
        return self._log_px_of(h, lead, x)

    def _log_px_of(self, h: Tensor, lead: torch.Size, x: Tensor) -> Tensor:
        """log p(x|z) from the shared decoder's features ``h`` of z (see :meth:`log_px`)."""
        return self._beta(self._alpha_of(h, lead)).log_prob(self.map_pixels(x))

    def image_mean(self, z: Tensor) -> Tensor:
        """The image α for z (*lead, latent), mapped back to the pixel scale: (*lead, 3, H, W) in [0, 1]."""
        return unmap_pixels(self._alpha(z), self.config.pixel_low, self.config.pixel_high)

    def _text_logits(self, z: Tensor, y: LongTensor) -> Tensor:
        return self._text_logits_of(*self._shared(z), y)

    def _text_logits_of(self, h: Tensor, lead: torch.Size, y: LongTensor) -> Tensor:
        y = y.expand(*lead, y.shape[-1]).reshape(-1, y.shape[-1])
        logits = self.text_decoder.logits(h, y)
        return logits.view(*lead, *logits.shape[1:])

    def log_py(self, y: LongTensor, z: Tensor) -> Tensor:
        """log p(y|z), teacher forced: y broadcasting against (*lead, L), z (*lead, latent) -> lead."""
        return self._log_py_of(self._text_logits(z, y), y)

    def _log_py_of(self, logits: Tensor, y: LongTensor) -> Tensor:
        """Σ_t log p(y_t | y_<t, z) over the words of each text: every slot up to and including the
        first end word for texts of variable length (docs/design.md §11), every slot otherwise."""
        log_probs = logits.log_softmax(-1)
        y = y.expand(*log_probs.shape[:-1])
        per_word = log_probs.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        if self.config.end_index is None:
            return per_word.sum(-1)
        return (per_word * text_mask(y, self.config.end_index)).sum(-1)

    def text_distribution(self, z: Tensor, y: LongTensor | None = None) -> Tensor:
        """Word probabilities (*lead, L, vocab): teacher forced on y if given, else greedy decoding."""
        if y is not None:
            return self._text_logits(z, y).softmax(-1)
        h, lead = self._shared(z)
        _, logits = self.text_decoder.generate(h, greedy=True)
        return logits.softmax(-1).view(*lead, *logits.shape[1:])

    def generate_text(self, z: Tensor, greedy: bool = True) -> LongTensor:
        """Decode texts (*lead, L) from z (*lead, latent), greedily or by sampling each word."""
        h, lead = self._shared(z)
        words, _ = self.text_decoder.generate(h, greedy=greedy)
        return end_after_end(words, self.config.end_index).view(*lead, words.shape[-1])

    @staticmethod
    def reparameterise(mean: Tensor, logvar: Tensor) -> Tensor:
        """z = mean + exp(logvar / 2) · ε, ε ~ N(0, I): a differentiable sample of
        N(mean, diag exp(logvar))."""
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)

    def decode_terms(
        self, x: Tensor | None, y: LongTensor | None, z: Tensor
    ) -> tuple[Tensor | None, Tensor | None]:
        """log p(x|z) and log p(y|z) (either None when its input is None) from one pass of the shared decoder.

        One pass feeds both likelihoods (and moves the shared decoder's batch-norm statistics once).
        """
        h, lead = self._shared(z)
        log_px = None if x is None else self._log_px_of(h, lead, x)
        log_py = None if y is None else self._log_py_of(self._text_logits_of(h, lead, y), y)
        return log_px, log_py

    def forward(
        self,
        x: Tensor,
        y: LongTensor,
        kl_weight: float = 1.0,
        w_x: float = 1.0,
        w_y: float = 1.0,
    ) -> VLVAEOutput:
        """One-sample reparameterised Eqns 1-2 on a batch.

        Arguments:
            x: (batch, 3, H, W) images in [0, 1].
            y: (batch, L) word indices.
            kl_weight: β_t (KL warm-up).
            w_x, w_y: likelihood weights of the training objective (not of ``elbo``).
        """
        mean, logvar = self.posterior.encode(x, y)
        log_px, log_py = self.decode_terms(x, y, self.reparameterise(mean, logvar))
        kl = kl_normal_standard(mean, logvar)
        objective = vlvae_elbo(log_px, log_py, kl, w_x=w_x, w_y=w_y, kl_weight=kl_weight)
        return VLVAEOutput(
            loss=-objective.mean(),
            elbo=(log_px + log_py - kl).mean(),
            log_px=log_px.mean(),
            log_py=log_py.mean(),
            kl=kl.mean(),
        )
