"""The convolutional recurrent network (CRNN) of both papers, one code path for 2D and 3D.

Two stacked ConvGRU blocks with the 3D paper's "deeper mapping" (every map is a k×k conv, tanh,
then a 1×1 conv), circular padding (periodic fields), zero initial hidden state, and a physics
output layer with fixed stencils that conserves ⟨φ⟩ exactly:

- flux head:      φ' = φ + ∇·u, u with its spatial mean removed, unscaled central-difference ∇·
- potential head: φ' = φ + ∇²μ, (2d+1)-point Laplacian

Scalar conditioning parameters (η) enter as constant input channels at every step. Optionally
the first block also sees the elastic potential μ_el = η² IFFT[trB(n) θ̂] of the current field
(feature "elastic"): a fixed, non-local, orientation-dependent operator that 3×3 or 5×5 kernels
unrolled over a few steps can only approximate, and the one the η conditioning exists to express.
Likewise a model may see the chemical potential μ = w'(φ) − ε∇²_h φ of the current field (feature
"chemical"): the flux head's u ≈ M∇μ is then one derivative of an input, not four of φ, so the
spinodal growth rate σ(k) = −k²(w'' + εk²) is within reach of a small network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..physics.equations import chemical_potential_fd, elastic_potential_of
from ..physics.presets import get_preset

HEADS = ("flux", "potential")
FEATURES = ("elastic", "chemical")
MAX_CHANNELS, MAX_KERNEL, MAX_BLOCKS = 256, 9, 8  # far beyond the papers; bounds a hostile config


@dataclass(frozen=True)
class CRNNConfig:
    """Architecture of a CRNN.

    Layer shapes: in each block the two gate maps (input→gates, hidden→gates) produce z and r
    together (k^d conv to 2C channels, tanh, 1×1 conv 2C→2C); the two candidate maps (input→c,
    reset-hidden→c) produce C channels (k^d conv, tanh, 1×1 conv C→C). With K = k^d and c_in the
    block's input channels this gives 3·C·K·(c_in + C) + 10·C² + 12·C parameters per block, and
    2·C·(C + 1) + K·C·n_out + n_out for the head (n_out = d for flux, 1 for potential).
    """

    dim: int = 2  # space dimension, 2 or 3
    channels: int = 24  # hidden channels C of each ConvGRU block
    kernel: int = 5  # odd side k of the k×k(×k) convolutions
    blocks: int = 2  # stacked ConvGRU blocks (both papers use 2)
    head: str = "potential"  # "flux" (3D paper, φ + ∇·u) or "potential" (2D paper, φ + ∇²μ)
    conditions: tuple = ()  # names of scalar conditioning inputs, e.g. ("misfit",)
    condition_scales: tuple = ()  # factor applied to each raw value (η as a fraction → percent: 100)
    features: tuple = ()  # physics input channels recomputed from φ every step, among FEATURES
    elastic: tuple = ()  # (C11, C12, C44) of the "elastic" feature
    interface_width: float = 0.0  # ε of the "chemical" feature
    spacing: int = 1  # model grid spacing in the preset's units (its --grid-scale) for the "chemical" feature
    symmetric: bool = False  # flip-averaged step ½[f(φ) + 1 − f(1 − φ)]: exactly equivariant under φ → 1 − φ

    def __post_init__(self):
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, not {self.dim!r}")
        if not isinstance(self.kernel, int) or not 1 <= self.kernel <= MAX_KERNEL or self.kernel % 2 != 1:
            raise ValueError(f"kernel must be an odd integer from 1 to {MAX_KERNEL}, not {self.kernel!r}")
        for key, bound in (("channels", MAX_CHANNELS), ("blocks", MAX_BLOCKS)):
            value = getattr(self, key)
            if not isinstance(value, int) or not 1 <= value <= bound:
                raise ValueError(f"{key} must be an integer from 1 to {bound}, not {value!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {self.head!r}")
        if len(self.condition_scales) != len(self.conditions):
            raise ValueError("give one condition scale per condition")
        if set(self.features) - set(FEATURES):
            raise ValueError(f"features must be among {FEATURES}, not {self.features!r}")
        if "elastic" in self.features and ("misfit" not in self.conditions or len(self.elastic) != 3):
            raise ValueError("the elastic feature needs the misfit condition and (C11, C12, C44)")
        if ("chemical" in self.features) != (self.interface_width > 0):
            raise ValueError("the chemical feature needs an interface width ε > 0, and only it has one")
        if self.spacing not in (1, 2, 4) or (self.spacing != 1 and "chemical" not in self.features):
            raise ValueError(f"spacing must be 1, 2 or 4, and other than 1 only with the chemical "
                             f"feature, not {self.spacing!r}")

    def to_dict(self) -> dict:
        """Plain-JSON description (stored in checkpoint config.json)."""
        d = asdict(self)
        d["conditions"], d["condition_scales"] = list(self.conditions), list(self.condition_scales)
        d["features"], d["elastic"] = list(self.features), list(self.elastic)
        if not self.features:  # configurations without features read as before
            del d["features"], d["elastic"]
        if not self.interface_width:
            del d["interface_width"]
        if self.spacing == 1:
            del d["spacing"]
        if not self.symmetric:
            del d["symmetric"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CRNNConfig":
        """Inverse of `to_dict`; unknown keys are an error (a newer or foreign architecture)."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown model configuration keys {sorted(unknown)}")
        d = dict(d)
        d["conditions"] = tuple(d.get("conditions", ()))
        d["condition_scales"] = tuple(float(s) for s in d.get("condition_scales", ()))
        d["features"] = tuple(d.get("features", ()))
        d["elastic"] = tuple(float(c) for c in d.get("elastic", ()))
        d["interface_width"] = float(d.get("interface_width", 0.0))
        d["spacing"] = int(d.get("spacing", 1))
        d["symmetric"] = bool(d.get("symmetric", False))
        return cls(**d)

    @property
    def batch_factor(self) -> int:
        """Network passes per field and step: 2 for the flip-averaged model (memory, cost)."""
        return 2 if self.symmetric else 1


_MISFIT = {"conditions": ("misfit",), "condition_scales": (100.0,)}  # η enters in percent
_COHERENT = get_preset("coherent-2d")
_ELASTIC = {**_MISFIT, "features": ("elastic",), "elastic": (_COHERENT.c11, _COHERENT.c12, _COHERENT.c44)}

REGISTRY: dict[str, CRNNConfig] = {
    # 3D paper: 10 channels, 3³ kernels, flux head → 28 383 parameters (paper: ≈ 2.9·10⁴)
    "paper-3d": CRNNConfig(dim=3, channels=10, kernel=3, head="flux"),
    # 2D paper: 24 channels, 5² kernels, ∇²μ head, η channel → 147 097 parameters (paper: ≈ 1.5·10⁵)
    "paper-2d": CRNNConfig(dim=2, channels=24, kernel=5, head="potential", **_MISFIT),
    # CPU-sized variants: same structure, fewer channels / smaller kernels
    # the 2D paper's 5×5 receptive field with 16 channels → 66 449 parameters, half its cost
    "medium-2d": CRNNConfig(dim=2, channels=16, kernel=5, head="potential", **_MISFIT),
    "small-2d": CRNNConfig(dim=2, channels=16, kernel=3, head="potential", **_MISFIT),
    # small-2d plus the elastic potential of the coherent-2d preset as an input channel
    "small-2d-elastic": CRNNConfig(dim=2, channels=16, kernel=3, head="potential", **_ELASTIC),
    # the same, flip-averaged: exactly equivariant under φ → 1 − φ at 1.6–2× the cost per step
    "small-2d-elastic-sym": CRNNConfig(dim=2, channels=16, kernel=3, head="potential", symmetric=True, **_ELASTIC),
    "small-3d": CRNNConfig(dim=3, channels=8, kernel=3, head="flux"),
    # small-3d plus the plain-3d preset's chemical potential as an input channel
    "small-3d-chemical": CRNNConfig(dim=3, channels=8, kernel=3, head="flux", features=("chemical",),
                                    interface_width=get_preset("plain-3d").interface_width),
    # the same on the 3D paper's half-resolution grid (--grid-scale 2): its μ channel divides the
    # model grid's Laplacian by spacing² = 4, so it is the solver's μ of the fine field
    "small-3d-chemical-half": CRNNConfig(dim=3, channels=8, kernel=3, head="flux", features=("chemical",),
                                         interface_width=get_preset("plain-3d").interface_width, spacing=2),
    # for tests
    "tiny-2d": CRNNConfig(dim=2, channels=4, kernel=3, head="potential", **_MISFIT),
    "tiny-3d": CRNNConfig(dim=3, channels=4, kernel=3, head="flux"),
}


def get_config(name: str) -> CRNNConfig:
    """Registry lookup with a clear error."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(REGISTRY)}") from None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (the fixed stencils are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether to call oneDNN's 3D convolution directly. PyTorch's CPU dispatch sends a batch-1
    convolution with a kernel of side ≤ 3 to its slow native kernel when N·C·D·H ≤ 20 480 (a rule
    tuned on 2D images, where it counts N·C·H·W): every 3D conv of the model at 32³ and the first
    one at 64³, 3–8× slower than oneDNN on the same call (README, "3D model efficiency"). 2D
    dispatch is left alone (no gain measured). Float32 CPU only, outside autocast and outside
    torch.compile (whose tracer has no meta kernel for the direct call)."""
    return (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and weight.ndim == 5 and weight.shape[-1] > 1
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def periodic_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Convolution of a periodic field: circular padding by half the kernel side, then a valid
    convolution (oneDNN's where `_onednn` says so)."""
    dim = weight.ndim - 2
    half = [p for side in reversed(weight.shape[2:]) for p in (side // 2, side // 2)]
    if any(half):
        x = F.pad(x, half, mode="circular")
    if _onednn(x, weight):
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, [0] * dim, [1] * dim, [1] * dim, 1)
    return (F.conv2d if dim == 2 else F.conv3d)(x, weight, bias)


class PeriodicConv2d(nn.Conv2d):
    """nn.Conv2d with circular padding computed by `periodic_conv` (same parameters and keys)."""

    def _conv_forward(self, x, weight, bias):
        return periodic_conv(x, weight, bias)


class PeriodicConv3d(nn.Conv3d):
    """nn.Conv3d with circular padding computed by `periodic_conv` (same parameters and keys)."""

    def _conv_forward(self, x, weight, bias):
        return periodic_conv(x, weight, bias)


def _conv(dim: int, cin: int, cout: int, kernel: int) -> nn.Module:
    cls = PeriodicConv2d if dim == 2 else PeriodicConv3d
    return cls(cin, cout, kernel, padding=kernel // 2, padding_mode="circular")


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh, written as 2σ(2x) − 1 on CPU: the same function (|difference| ≤ 2·10⁻⁷ in float32),
    but torch's CPU tanh kernel takes about twice as long as sigmoid and two multiply-adds,
    and the model's 12 activations per step were a third of a 2D step (README, "Live at display speed")."""
    return torch.tanh(x) if x.device.type != "cpu" else torch.sigmoid(2 * x) * 2 - 1


def tanh_(x: torch.Tensor) -> torch.Tensor:
    """`tanh` overwriting x: for inference only, on a temporary nothing else reads."""
    return x.tanh_() if x.device.type != "cpu" else x.mul_(2).sigmoid_().mul_(2).sub_(1)


class Tanh(nn.Module):
    """`tanh` as a layer (no parameters, so checkpoints are unchanged). Its input is always the
    fresh output of the convolution before it, so without autograd it works in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tanh_(x) if not torch.is_grad_enabled() else tanh(x)


def deep_map(dim: int, cin: int, cout: int, kernel: int) -> nn.Sequential:
    """The deeper mapping: k×k conv, tanh, 1×1 conv."""
    return nn.Sequential(_conv(dim, cin, cout, kernel), Tanh(), _conv(dim, cout, cout, 1))


class ConvGRU(nn.Module):
    """ConvGRU cell: z, r = σ(Wx + Uh); c = tanh(W'x + U'(r⊙h)); h' = (1−z)⊙c + z⊙h."""

    def __init__(self, dim: int, cin: int, channels: int, kernel: int):
        super().__init__()
        self.x_gates = deep_map(dim, cin, 2 * channels, kernel)
        self.h_gates = deep_map(dim, channels, 2 * channels, kernel)
        self.x_cand = deep_map(dim, cin, channels, kernel)
        self.h_cand = deep_map(dim, channels, channels, kernel)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self._forward_in_place(x, h)
        z, r = torch.sigmoid(self.x_gates(x) + self.h_gates(h)).chunk(2, dim=1)
        c = tanh(self.x_cand(x) + self.h_cand(r * h))
        return (1 - z) * c + z * h

    def _forward_in_place(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The same cell without autograd, overwriting its own temporaries and writing h' as
        c + z⊙(h − c): fewer elementwise passes and allocations, which were half of a 2D step
        on CPU (README, "Live at display speed"); equal to `forward` up to float32 round-off."""
        z, r = self.x_gates(x).add_(self.h_gates(h)).sigmoid_().chunk(2, dim=1)
        c = tanh_(self.x_cand(x).add_(self.h_cand(r * h)))
        return torch.addcmul(c, z, h - c)


def _neighbour(dim: int, axis: int, index: int) -> tuple:
    """Spatial index of a 3^d stencil: centre except `index` (0 = −1, 2 = +1) along `axis`."""
    at = [1] * dim
    at[axis] = index
    return tuple(at)


def divergence_stencil(dim: int) -> torch.Tensor:
    """(1, d, 3, …) kernel of the unscaled central difference Σ_a u_a(x + e_a) − u_a(x − e_a)."""
    w = torch.zeros(1, dim, *(3,) * dim)
    for a in range(dim):
        w[(0, a, *_neighbour(dim, a, 2))] = 1.0
        w[(0, a, *_neighbour(dim, a, 0))] = -1.0
    return w


def laplacian_stencil(dim: int) -> torch.Tensor:
    """(1, 1, 3, …) kernel of the (2d+1)-point Laplacian, grid spacing 1."""
    w = torch.zeros(1, 1, *(3,) * dim)
    w[(0, 0, *(1,) * dim)] = -2.0 * dim
    for a in range(dim):
        for index in (0, 2):
            w[(0, 0, *_neighbour(dim, a, index))] = 1.0
    return w


class PhysicsUpdate(nn.Module):
    """φ' = φ + ∇·(u − ⟨u⟩) (flux) or φ' = φ + ∇²μ (potential) with a fixed periodic stencil.

    Both stencils sum to zero, so ⟨φ'⟩ = ⟨φ⟩. The stencil is a non-persistent buffer (moves with
    the module, not trained, not saved) and runs in φ's dtype outside autocast, so conservation
    holds to float32 round-off even under bfloat16 inference.
    """

    def __init__(self, dim: int, head: str):
        super().__init__()
        self.dim, self.head = dim, head
        stencil = divergence_stencil(dim) if head == "flux" else laplacian_stencil(dim)
        self.register_buffer("stencil", stencil, persistent=False)

    def forward(self, phi: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        with torch.autocast(phi.device.type, enabled=False):
            out = out.to(phi.dtype)
            if self.head == "flux":
                out = out - out.mean(dim=tuple(range(2, 2 + self.dim)), keepdim=True)
            return phi + periodic_conv(out, self.stencil.to(phi.dtype), None).squeeze(1)


def input_channels(config: CRNNConfig) -> int:
    """Channels of the first block's input: φ, one per condition, one per feature (in that order)."""
    return 1 + len(config.conditions) + len(config.features)


def elastic_feature(phi: torch.Tensor, misfit: torch.Tensor, constants: tuple) -> torch.Tensor:
    """μ_el = η² IFFT[trB(n) θ̂] per batch element (physics.md §2), computed in float32 outside
    autocast (FFTs have no bfloat16 kernels) and returned in φ's dtype."""
    with torch.autocast(phi.device.type, enabled=False):
        x = phi.float()
        mu = elastic_potential_of(x, misfit.to(x), constants, phi.ndim - 1)
    return mu.to(phi.dtype)


def chemical_feature(phi: torch.Tensor, eps: float, spacing: int = 1) -> torch.Tensor:
    """μ = w'(φ) − ε∇²φ with the (2d+1)-point Laplacian of a grid `spacing` preset units apart,
    computed in float32 outside autocast like `elastic_feature`."""
    with torch.autocast(phi.device.type, enabled=False):
        mu = chemical_potential_fd(phi.float(), eps, phi.ndim - 1, spacing)
    return mu.to(phi.dtype)


class CRNN(nn.Module):
    """φ_t (B, *grid), hidden states, conditions (B, P) → (φ_{t+τ}, hidden states).

    `forward` is pure: no teacher forcing, no training modes; hidden None means zero states.
    """

    def __init__(self, config: CRNNConfig):
        super().__init__()
        self.config = config
        c, k, d = config.channels, config.kernel, config.dim
        cin = input_channels(config)
        self.cells = nn.ModuleList(ConvGRU(d, cin if i == 0 else c, c, k) for i in range(config.blocks))
        out = d if config.head == "flux" else 1
        self.head = nn.Sequential(_conv(d, c, c, 1), Tanh(), _conv(d, c, c, 1), Tanh(),
                                  _conv(d, c, out, k))
        self.physics = PhysicsUpdate(d, config.head)
        self.register_buffer("scales", torch.tensor(config.condition_scales, dtype=torch.float32),
                             persistent=False)

    def _inputs(self, phi: torch.Tensor, conditions: torch.Tensor | None) -> torch.Tensor:
        """First block's input: φ, one constant channel per condition (value × scale), then one
        channel per feature."""
        if phi.ndim != 1 + self.config.dim:
            raise ValueError(f"phi must be (batch, *grid) with {self.config.dim} grid axes, "
                             f"got shape {tuple(phi.shape)}")
        channels = [phi.unsqueeze(1)]
        n = len(self.config.conditions)
        if n == 0:
            if conditions is not None and conditions.numel():
                raise ValueError("this model takes no conditioning parameters")
        elif conditions is None or tuple(conditions.shape) != (phi.shape[0], n):
            got = None if conditions is None else tuple(conditions.shape)
            raise ValueError(f"this model needs conditions of shape (batch, {n}) for "
                             f"{self.config.conditions}, got {got}")
        else:
            values = (conditions.to(phi) * self.scales.to(phi)).reshape(*conditions.shape, *(1,) * self.config.dim)
            channels.append(values.expand(-1, -1, *phi.shape[1:]))
        for feature in self.config.features:
            if feature == "elastic":
                misfit = conditions[:, self.config.conditions.index("misfit")]
                channels.append(elastic_feature(phi, misfit, self.config.elastic).unsqueeze(1))
            else:
                channels.append(chemical_feature(phi, self.config.interface_width,
                                                 self.config.spacing).unsqueeze(1))
        return torch.cat(channels, dim=1) if len(channels) > 1 else channels[0]

    def forward(self, phi: torch.Tensor, hidden: tuple | None = None,
                conditions: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple]:
        if self.config.symmetric:
            return self._flip_averaged(phi, hidden, conditions)
        return self._step(phi, hidden, conditions)

    def _flip_averaged(self, phi: torch.Tensor, hidden: tuple | None,
                       conditions: torch.Tensor | None) -> tuple[torch.Tensor, tuple]:
        """½[f(φ) + 1 − f(1 − φ)], each branch with its own hidden state (stacked: 2B along batch).

        φ → 1 − φ is a symmetry of the free energy (w and the elastic energy are even in φ − ½),
        which augmentation teaches only approximately: the shipped 2D model grew a mixture at
        ⟨φ⟩ and its mirror at 1 − ⟨φ⟩ differently (README, "Flip-averaged"). Averaging removes the
        odd part of the error exactly; both branches conserve mass, so the average does too. The
        branches run one after the other: at 128² on CPU (1 thread, a loaded machine) one batch of
        2B cost 2.7× a plain step (out of cache), two batches of B 2.1×."""
        b = phi.shape[0]
        ours = theirs = None
        if hidden is not None:
            ours, theirs = tuple(h[:b] for h in hidden), tuple(h[b:] for h in hidden)
        out, ours = self._step(phi, ours, conditions)
        mirrored, theirs = self._step(1 - phi, theirs, conditions)
        return 0.5 * (out + (1 - mirrored)), tuple(torch.cat(pair) for pair in zip(ours, theirs))

    def _step(self, phi: torch.Tensor, hidden: tuple | None,
              conditions: torch.Tensor | None) -> tuple[torch.Tensor, tuple]:
        x = self._inputs(phi, conditions)
        if hidden is None:
            zeros = phi.new_zeros(phi.shape[0], self.config.channels, *phi.shape[1:])
            hidden = (zeros,) * len(self.cells)
        elif len(hidden) != len(self.cells):
            raise ValueError(f"expected {len(self.cells)} hidden states, got {len(hidden)}")
        new_hidden = []
        for cell, h in zip(self.cells, hidden):
            x = cell(x, h)
            new_hidden.append(x)
        return self.physics(phi, self.head(x)), tuple(new_hidden)
