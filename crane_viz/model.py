"""The convolutional recurrent network (CRNN) of both papers, one code path for 2D and 3D.

Two stacked ConvGRU blocks with the 3D paper's "deeper mapping" (every map is a k×k conv, tanh,
then a 1×1 conv), circular padding (periodic fields), zero initial hidden state, and a physics
output layer that conserves ⟨φ⟩ exactly:

- flux head:      φ' = φ + ∇·u, u with its spatial mean removed, fixed central-difference ∇·
- potential head: φ' = φ + ∇²μ, fixed (2d+1)-point Laplacian

Scalar conditioning parameters (η) enter as constant input channels at every step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from .engines.fd import periodic_laplacian
from .errors import CheckpointError

HEADS = ("flux", "potential")


@dataclass(frozen=True)
class CRNNConfig:
    """Architecture of a CRNN. Parameter count ≈ 14 k² C² per block for large C."""

    dim: int = 2  # space dimension, 2 or 3
    channels: int = 24  # hidden channels of each ConvGRU block
    kernel: int = 5  # odd spatial kernel size of the k×k(×k) convolutions
    blocks: int = 2  # stacked ConvGRU blocks (both papers use 2)
    head: str = "potential"  # "flux" (3D paper) or "potential" (2D paper)
    conditions: tuple = ()  # names of scalar conditioning inputs, e.g. ("misfit",)
    condition_scales: tuple = ()  # each raw value is multiplied by this (η → η in percent: 100)

    def __post_init__(self):
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, not {self.dim}")
        if self.kernel % 2 != 1:
            raise ValueError(f"kernel must be odd, not {self.kernel}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {self.head!r}")
        if len(self.condition_scales) != len(self.conditions):
            raise ValueError("give one condition scale per condition")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["conditions"], d["condition_scales"] = list(self.conditions), list(self.condition_scales)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CRNNConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise CheckpointError(f"unknown model configuration keys {sorted(unknown)}")
        d = dict(d)
        d["conditions"] = tuple(d.get("conditions", ()))
        d["condition_scales"] = tuple(float(s) for s in d.get("condition_scales", ()))
        return cls(**d)


REGISTRY: dict[str, CRNNConfig] = {
    # 3D paper: 10 channels, 3³ kernels, flux head → 28 383 parameters (paper: ≈ 2.9·10⁴)
    "paper-3d": CRNNConfig(dim=3, channels=10, kernel=3, head="flux"),
    # 2D paper: 24 channels, 5² kernels, ∇²μ head, η channel → 147 097 parameters (paper: ≈ 1.5·10⁵)
    "paper-2d": CRNNConfig(dim=2, channels=24, kernel=5, head="potential",
                           conditions=("misfit",), condition_scales=(100.0,)),
    # CPU-sized variants: same structure, fewer channels / smaller kernels
    "small-2d": CRNNConfig(dim=2, channels=16, kernel=3, head="potential",
                           conditions=("misfit",), condition_scales=(100.0,)),
    "small-3d": CRNNConfig(dim=3, channels=8, kernel=3, head="flux"),
    # for tests
    "tiny-2d": CRNNConfig(dim=2, channels=4, kernel=3, head="potential",
                          conditions=("misfit",), condition_scales=(100.0,)),
    "tiny-3d": CRNNConfig(dim=3, channels=4, kernel=3, head="flux"),
}


def get_config(name: str) -> CRNNConfig:
    """Registry lookup with a clear error."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(REGISTRY)}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv(dim: int, cin: int, cout: int, kernel: int) -> nn.Module:
    cls = nn.Conv2d if dim == 2 else nn.Conv3d
    return cls(cin, cout, kernel, padding=kernel // 2, padding_mode="circular")


def deep_map(dim: int, cin: int, cout: int, kernel: int) -> nn.Sequential:
    """The deeper mapping: k×k conv, tanh, 1×1 conv."""
    return nn.Sequential(_conv(dim, cin, cout, kernel), nn.Tanh(), _conv(dim, cout, cout, 1))


class ConvGRU(nn.Module):
    """ConvGRU cell: z, r = σ(Wx + Uh); c = tanh(W'x + U'(r⊙h)); h' = (1−z)⊙c + z⊙h."""

    def __init__(self, dim: int, cin: int, channels: int, kernel: int):
        super().__init__()
        self.channels = channels
        self.x_gates = deep_map(dim, cin, 2 * channels, kernel)
        self.h_gates = deep_map(dim, channels, 2 * channels, kernel)
        self.x_cand = deep_map(dim, cin, channels, kernel)
        self.h_cand = deep_map(dim, channels, channels, kernel)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.x_gates(x) + self.h_gates(h)).chunk(2, dim=1)
        c = torch.tanh(self.x_cand(x) + self.h_cand(r * h))
        return (1 - z) * c + z * h


def divergence(u: torch.Tensor, dim: int) -> torch.Tensor:
    """Unscaled periodic central-difference divergence Σ_a u_a(x + e_a) − u_a(x − e_a)."""
    return sum(torch.roll(u[:, a], -1, a + 1) - torch.roll(u[:, a], 1, a + 1) for a in range(dim))


class CRNN(nn.Module):
    """φ_t (B, *grid) and hidden states → φ_{t+τ}; `forward` is pure (no training modes)."""

    def __init__(self, config: CRNNConfig):
        super().__init__()
        self.config = config
        c, k, d = config.channels, config.kernel, config.dim
        cin = 1 + len(config.conditions)
        self.cells = nn.ModuleList(ConvGRU(d, cin if i == 0 else c, c, k) for i in range(config.blocks))
        out = d if config.head == "flux" else 1
        self.head = nn.Sequential(_conv(d, c, c, 1), nn.Tanh(), _conv(d, c, c, 1), nn.Tanh(),
                                  _conv(d, c, out, k))
        self.register_buffer("scales", torch.tensor(config.condition_scales, dtype=torch.float32),
                             persistent=False)

    def _inputs(self, phi: torch.Tensor, conditions: torch.Tensor | None) -> torch.Tensor:
        n = len(self.config.conditions)
        if n == 0:
            if conditions is not None and conditions.numel():
                raise ValueError("this model takes no conditioning parameters")
            return phi.unsqueeze(1)
        if conditions is None or conditions.shape != (phi.shape[0], n):
            raise ValueError(f"this model needs conditions of shape (batch, {n}) for "
                             f"{self.config.conditions}, got "
                             f"{None if conditions is None else tuple(conditions.shape)}")
        values = (conditions.to(phi) * self.scales.to(phi)).reshape(*conditions.shape, *([1] * self.config.dim))
        return torch.cat([phi.unsqueeze(1), values.expand(-1, -1, *phi.shape[1:])], dim=1)

    def forward(self, phi: torch.Tensor, hidden: tuple | None = None,
                conditions: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple]:
        x = self._inputs(phi, conditions)
        if hidden is None:
            zeros = phi.new_zeros(phi.shape[0], self.config.channels, *phi.shape[1:])
            hidden = (zeros,) * len(self.cells)
        new_hidden = []
        for cell, h in zip(self.cells, hidden):
            x = cell(x, h)
            new_hidden.append(x)
        out = self.head(x)
        d = self.config.dim
        if self.config.head == "flux":
            out = out - out.mean(dim=tuple(range(2, 2 + d)), keepdim=True)
            update = divergence(out, d)
        else:
            update = periodic_laplacian(out[:, 0], d)
        return phi + update, tuple(new_hidden)
