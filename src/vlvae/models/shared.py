"""Shared encoder and decoder MLPs of the VLVAE (Cremer & Kushman 2018, §5.1).

Shared encoder: the concatenated modality encodings pass through three
fully-connected layers with batch norm (Ioffe & Szegedy 2015) and a residual
connection (He et al. 2016) to the mean and log-variance of a diagonal Gaussian
over z; the log-variance is clamped to [−15, 10] (docs/design.md §2.1). Both are
returned in float32 whatever autocast computes the layers in, so q(z|x), its KL
and z itself are float32 (docs/mixed_precision.md).

Shared decoder: z passes through five fully-connected layers of width 500 with
two residual connections and batch norm to a 200-d vector read by both the
image and the text decoder.
"""

from __future__ import annotations

from torch import Tensor, nn

from vlvae.objectives import float32

__all__ = ["SharedEncoder", "SharedDecoder"]


def _layer(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, out_features), nn.BatchNorm1d(out_features), nn.ReLU())


class SharedEncoder(nn.Module):
    """Encodings -> (mean, log-variance) of q(z|·).

    h1 = layer(x); h2 = h1 + layer(h1); (mean, logvar) = linear(h2), where layer is
    linear, batch norm, ReLU.

    Arguments:
        in_features: size of the concatenated encodings.
        hidden: width of the hidden layers.
        latent_dim: size of z.
        logvar_min, logvar_max: clamp of the log-variance.

    Example:
        >>> enc = SharedEncoder(8, 16, 4, -15.0, 10.0)
        >>> mean, logvar = enc(torch.randn(3, 8))
        >>> mean.shape, logvar.shape
        (torch.Size([3, 4]), torch.Size([3, 4]))
    """

    def __init__(
        self, in_features: int, hidden: int, latent_dim: int, logvar_min: float, logvar_max: float
    ) -> None:
        super().__init__()
        self.inp = _layer(in_features, hidden)
        self.res = _layer(hidden, hidden)
        self.out = nn.Linear(hidden, 2 * latent_dim)
        self.logvar_min = logvar_min
        self.logvar_max = logvar_max

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, in_features) -> mean, logvar: (batch, latent_dim) each, float32 (or float64)."""
        h = self.inp(x)
        h = h + self.res(h)
        mean, logvar = float32(self.out(h)).chunk(2, dim=-1)
        return mean, logvar.clamp(self.logvar_min, self.logvar_max)


class SharedDecoder(nn.Module):
    """z -> the vector both decoders read.

    h1 = layer(z); h2 = h1 + layer(h1); h3 = layer(h2); h4 = h2 + layer(h3);
    out = linear(h4): five linear layers, two residual connections, where layer
    is linear, batch norm, ReLU.

    Arguments:
        latent_dim: size of z.
        hidden: width of the hidden layers.
        out_features: size of the output.

    Example:
        >>> dec = SharedDecoder(4, 16, 8)
        >>> dec(torch.randn(3, 4)).shape
        torch.Size([3, 8])
    """

    def __init__(self, latent_dim: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_layer(latent_dim, hidden)] + [_layer(hidden, hidden) for _ in range(3)])
        self.out = nn.Linear(hidden, out_features)

    def forward(self, z: Tensor) -> Tensor:
        """z: (batch, latent_dim) -> (batch, out_features)."""
        h1 = self.layers[0](z)
        h2 = h1 + self.layers[1](h1)
        h4 = h2 + self.layers[3](self.layers[2](h2))
        return self.out(h4)
