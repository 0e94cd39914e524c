"""SCGAN: spatially conditioned GAN for outpainting (IJCV sec. 3.3 and 4.8, Fig. 6, eq. 7–8).

Three stages, all in one run folder and one checkpoint (`scgan.safetensors`):

1. Patch GAN: G_center z_center → patch [N, C, ph, pw] and a spectrally normalised D_center on patches, trained with
   the zoo's objective (`training.gan.losses.GANObjective`, SNGAN hinge by default) on centre crops of the train split.
2. DFI on the patch GAN: CN regresses z_center from the frozen D_center^f(G_center(z_center)) (eq. 5, latent loss on
   fresh generated pairs, exactly what `training.inversion.dfi` does for a full GAN; its `Inverter` module is reused).
3. G_full: concat(ẑ_center, z_edge) → full image y_full. y_crop = the patch region of y_full; y_glue = y_full with
   the patch region replaced by G_center(ẑ_center). During training ẑ_center = z_center ~ N(0, I) (the paper feeds
   G_center's latent). Loss of G (eq. 7–8):

       loss_G = 0.5·(L_adv(y_full) + L_adv(y_glue)) + α·‖ẑ_center − CN(D_center^f(y_crop))‖₁      (α = 10)

   D (`SCGANDiscriminator`): a global discriminator on the full image and a local one on the patch region, their
   feature vectors concatenated and scored by one linear layer (Iizuka et al. 2017); spectral norm everywhere;
   non-saturating logistic loss plus a zero-centred gradient penalty on real images, (γ/2)·‖∇D(x)‖², γ = 10
   (Mescheder et al. 2018, R1). One logit per image: the PatchGAN output of the paper is not used at 28×28.

At inference (the exported `outpaint` graph): ẑ_center = CN(D_center^f(patch)), image = G_full(concat(ẑ_center,
z_edge)).

Shapes: full image x [N, C, H, W] float32 [-1, +1]; patch [N, C, ph, pw]; z_center [N, Zc]; z_edge [N, Ze].
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from tqdm.auto import tqdm

from training.core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from training.core.config import config_from_dict, register_config
from training.core.plotting import save_grid
from training.core.runs import RunDir, RunLog
from training.core.torch_utils import frozen, resolve_device
from training.datasets import Dataset, load_dataset
from training.gan.losses import GANObjective, LossConfig
from training.gan.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from training.inversion.dfi import Inverter, latent_loss
from training.inversion.networks import (
    ConnectionNetwork,
    ConnectionNetworkConfig,
    DiscriminatorFeatures,
    FeatureExtractorConfig,
)


@register_config
@dataclass
class SCGANConfig:
    # Checkpoints before the training/ redesign called the full image shape `image_shape` (every other config: shape).
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"image_shape": "shape"}

    data: str = "fashion-mnist"
    data_dir: str | None = None
    shape: tuple[int, int, int] = (1, 28, 28)  # the full images' (C, H, W)
    patch_top: int = 7
    patch_left: int = 7
    patch_size: int = 14  # square patch side; must be 7·2^k or 4·2^k for the zoo's networks
    z_center: int = 32
    z_edge: int = 32
    g_width: int = 64  # DCGAN ngf of G_center and G_full
    d_width: int = 32  # DCGAN ndf of every discriminator (32: G_full at ~0.2 s/step on one CPU thread)
    feature_dim: int = 256  # FC feature layer `last` of every discriminator (D_center^f is this vector)
    cn_hidden: int = 256  # connection network width (hidden layers with GroupNorm of 32 groups)
    cn_depth: int = 2
    # stage 1: patch GAN
    patch_loss: str = "sngan"
    patch_steps: int = 5_000
    # stage 2: DFI of the patch GAN
    dfi_steps: int = 3_000
    dfi_lr: float = 1e-3
    # stage 3: G_full
    full_steps: int = 2_500
    alpha: float = 10.0  # weight of the latent consistency term (eq. 8)
    gamma: float = 10.0  # zero-centred gradient penalty on real images
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 64
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    device: str = "auto"
    kind: str = field(default="scgan", init=False)

    @property
    def patch_shape(self) -> tuple[int, int, int]:
        return (self.shape[0], self.patch_size, self.patch_size)

    def validate(self) -> None:
        problems = []
        c, h, w = self.shape
        if self.patch_top < 0 or self.patch_left < 0:
            problems.append("patch position must be ≥ 0")
        if self.patch_top + self.patch_size > h or self.patch_left + self.patch_size > w:
            problems.append(
                f"patch {self.patch_size} at ({self.patch_top}, {self.patch_left}) leaves the {h}×{w} image"
            )
        for name in ("patch_steps", "dfi_steps", "full_steps", "batch_size", "z_center", "z_edge", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be ≥ 1")
        if self.cn_hidden % 32 or self.cn_hidden < 128:
            problems.append("cn_hidden must be a multiple of 32 and ≥ 128 (GroupNorm with 32 groups)")
        if problems:
            raise ValueError("invalid SCGAN config: " + "; ".join(problems))


# ------------------------------------------------------------------------------------------------------ modules


def crop(x: torch.Tensor, cfg: SCGANConfig) -> torch.Tensor:
    """The patch region of full images: [N, C, H, W] → [N, C, ph, pw]."""
    t, left, s = cfg.patch_top, cfg.patch_left, cfg.patch_size
    return x[:, :, t : t + s, left : left + s]


def glue(full: torch.Tensor, patch: torch.Tensor, cfg: SCGANConfig) -> torch.Tensor:
    """`full` with its patch region replaced by `patch` (differentiable in both; no in-place write)."""
    t, left, s = cfg.patch_top, cfg.patch_left, cfg.patch_size
    _, _, h, w = full.shape
    padded = F.pad(patch, (left, w - left - s, t, h - t - s))
    mask = torch.zeros(1, 1, h, w, dtype=full.dtype, device=full.device)
    mask[:, :, t : t + s, left : left + s] = 1.0
    return full * (1 - mask) + padded * mask


class SCGANDiscriminator(nn.Module):
    """Global D on the full image + local D on the patch region; features concatenated → one logit [N]."""

    def __init__(self, cfg: SCGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        make = lambda shape: Discriminator(  # noqa: E731
            DiscriminatorConfig(shape=shape, width=cfg.d_width, norm="spectral", feature_dim=cfg.feature_dim)
        )
        self.global_d = make(cfg.shape)
        self.local_d = make(cfg.patch_shape)
        self.logit = spectral_norm(nn.Linear(2 * cfg.feature_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.global_d.features(x)["last"], self.local_d.features(crop(x, self.cfg))["last"]], dim=1)
        return self.logit(h).squeeze(1)


def build_patch_gan(cfg: SCGANConfig) -> tuple[Generator, Discriminator]:
    G = Generator(GeneratorConfig(shape=cfg.patch_shape, z_dim=cfg.z_center, width=cfg.g_width))
    norm = "spectral" if cfg.patch_loss == "sngan" else "batch"
    D = Discriminator(DiscriminatorConfig(shape=cfg.patch_shape, width=cfg.d_width, norm=norm,
                                          feature_dim=cfg.feature_dim))  # fmt: skip
    return G, D


def build_patch_inverter(cfg: SCGANConfig, D_center: Discriminator) -> Inverter:
    features = DiscriminatorFeatures(D_center, FeatureExtractorConfig(taps=("last",)))
    cn = ConnectionNetwork(ConnectionNetworkConfig(features.out_dim, cfg.z_center, cfg.cn_hidden, cfg.cn_depth))
    return Inverter(features, cn, frozen_features=True)


def build_full_generator(cfg: SCGANConfig) -> Generator:
    return Generator(GeneratorConfig(shape=cfg.shape, z_dim=cfg.z_center + cfg.z_edge, width=cfg.g_width))


def build_scgan(cfg: SCGANConfig) -> dict[str, nn.Module]:
    """Every module of the run, freshly initialised: G_center, D_center, inverter (D_center^f + CN), G_full, D_full."""
    G_center, D_center = build_patch_gan(cfg)
    return {
        "G_center": G_center,
        "D_center": D_center,
        "inverter": build_patch_inverter(cfg, D_center),
        "G_full": build_full_generator(cfg),
        "D_full": SCGANDiscriminator(cfg),
    }


class Outpainter(nn.Module):
    """(patch [N, C, ph, pw], z_edge [N, Ze]) → image [N, C, H, W]: G_full(concat(CN(D_center^f(patch)), z_edge))."""

    def __init__(self, inverter: Inverter, G_full: Generator) -> None:
        super().__init__()
        self.inverter, self.G_full = inverter, G_full

    def forward(self, patch: torch.Tensor, z_edge: torch.Tensor) -> torch.Tensor:
        return self.G_full(torch.cat([self.inverter(patch), z_edge], dim=1))


# ------------------------------------------------------------------------------------------------------ losses


def latent_consistency(
    inverter: nn.Module, y_full: torch.Tensor, z_center: torch.Tensor, cfg: SCGANConfig
) -> torch.Tensor:
    """‖ẑ_center − CN(D_center^f(y_crop))‖₁, mean over batch and coordinates (eq. 8 without α)."""
    return F.l1_loss(inverter(crop(y_full, cfg)), z_center)


def generator_loss(
    D_full: nn.Module, inverter: nn.Module, G_center: nn.Module, G_full: nn.Module, z_center: torch.Tensor,
    z_edge: torch.Tensor, cfg: SCGANConfig,
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor, torch.Tensor]:  # fmt: skip
    """loss_G = 0.5·(L_adv(y_full) + L_adv(y_glue)) + α·latent term; returns (loss, stats, y_full, y_glue).

    L_adv is the non-saturating −log σ(D(y)). G_center is frozen: y_glue's gradient reaches G_full only outside
    the patch."""
    y_full = G_full(torch.cat([z_center, z_edge], dim=1))
    with torch.no_grad():
        center = G_center(z_center)
    y_glue = glue(y_full, center, cfg)
    adv = 0.5 * (F.softplus(-D_full(y_full)).mean() + F.softplus(-D_full(y_glue)).mean())
    lat = latent_consistency(inverter, y_full, z_center, cfg)
    loss = adv + cfg.alpha * lat
    return loss, {"adv_G": adv.item(), "latent_l1": lat.item()}, y_full, y_glue


def discriminator_loss(
    D_full: nn.Module, real: torch.Tensor, y_full: torch.Tensor, y_glue: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """softplus(−D(x)) + 0.5·(softplus(D(y_full)) + softplus(D(y_glue))) + (γ/2)·‖∇ₓD(x)‖² on real x."""
    real = real.detach().requires_grad_(True)
    d_real = D_full(real)
    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    penalty = grad.flatten(1).pow(2).sum(1).mean()
    d_full, d_glue = D_full(y_full.detach()), D_full(y_glue.detach())
    adv = F.softplus(-d_real).mean() + 0.5 * (F.softplus(d_full).mean() + F.softplus(d_glue).mean())
    loss = adv + 0.5 * gamma * penalty
    stats = {"D(real)": d_real.mean().item(), "D(y_full)": d_full.mean().item(), "D(y_glue)": d_glue.mean().item(),
             "r1": penalty.item()}  # fmt: skip
    return loss, stats


# ------------------------------------------------------------------------------------------------------ training


def _adam(params: Any, lr: float, cfg: SCGANConfig) -> torch.optim.Adam:
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=lr, betas=(cfg.beta1, cfg.beta2))


def _crops(data: Dataset, index: torch.Tensor, cfg: SCGANConfig, device: torch.device) -> torch.Tensor:
    return crop(data.batch(index, device), cfg).contiguous()


def train_patch_gan(
    G: Generator, D: Discriminator, data: Dataset, cfg: SCGANConfig, rng: torch.Generator, device: torch.device,
    log: RunLog | None = None, quiet: bool = False,
) -> dict[str, float]:  # fmt: skip
    """Stage 1: the zoo's objective on centre crops of the train split."""
    G.requires_grad_(True)
    D.requires_grad_(True)  # build_scgan's Inverter froze D_center, which it shares; it is trained here first
    objective = GANObjective(LossConfig(name=cfg.patch_loss), D)
    opt_g, opt_d = _adam(G.parameters(), cfg.lr_g, cfg), _adam(D.parameters(), cfg.lr_d, cfg)
    G.train()
    D.train()
    record: dict[str, float] = {}
    started = time.perf_counter()
    for step in tqdm(range(cfg.patch_steps), desc="patch GAN", disable=quiet):
        real = _crops(data, torch.randint(len(data), (cfg.batch_size,), generator=rng), cfg, device)
        z = torch.randn(cfg.batch_size, cfg.z_center, generator=rng).to(device)
        with torch.no_grad():
            fake = G(z)
        d_loss, stats = objective.discriminator_loss(real, fake, rng)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        z = torch.randn(cfg.batch_size, cfg.z_center, generator=rng).to(device)
        g_loss, _ = objective.generator_loss(G(z))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if not (torch.isfinite(d_loss) and torch.isfinite(g_loss)):
            raise FloatingPointError(f"patch GAN: non-finite loss at step {step + 1}")
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.patch_steps:
            record = {"stage": "patch_gan", "step": step + 1, "loss_D": d_loss.item(), "loss_G": g_loss.item(),
                      **stats, "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
            if log:
                log.write(record)
    frozen(G)
    frozen(D)
    return record


def train_patch_inverter(
    inverter: Inverter, G_center: Generator, cfg: SCGANConfig, rng: torch.Generator, device: torch.device,
    log: RunLog | None = None, quiet: bool = False,
) -> dict[str, float]:  # fmt: skip
    """Stage 2: DFI (eq. 5, squared-L2 latent loss on fresh pairs z → G_center(z)); D_center stays frozen."""
    params = [p for p in inverter.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.dfi_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.dfi_steps, eta_min=0.0)
    held_z = torch.randn(256, cfg.z_center, generator=torch.Generator().manual_seed(cfg.seed + 1)).to(device)
    with torch.no_grad():
        held_x = G_center(held_z)
    inverter.train()
    record: dict[str, float] = {}
    started = time.perf_counter()
    for step in tqdm(range(cfg.dfi_steps), desc="patch DFI", disable=quiet):
        z = torch.randn(cfg.batch_size, cfg.z_center, generator=rng).to(device)
        with torch.no_grad():
            x = G_center(z)
        loss = latent_loss(inverter(x), z, "mse")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"patch DFI: non-finite loss at step {step + 1}")
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.dfi_steps:
            inverter.eval()
            with torch.no_grad():
                held = (inverter(held_x) - held_z).pow(2).mean().item()
            inverter.train()
            record = {"stage": "patch_dfi", "step": step + 1, "loss": loss.item(), "heldout_latent_error": held,
                      "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
            if log:
                log.write(record)
    frozen(inverter)
    return record


def train_full_generator(
    modules: dict[str, nn.Module], data: Dataset, cfg: SCGANConfig, rng: torch.Generator, device: torch.device,
    log: RunLog | None = None, quiet: bool = False, sample: Any = None,
) -> dict[str, float]:  # fmt: skip
    """Stage 3: G_full and D_full with G_center and the inverter frozen."""
    G_full, D_full = modules["G_full"], modules["D_full"]
    G_center, inverter = frozen(modules["G_center"]), frozen(modules["inverter"])
    opt_g, opt_d = _adam(G_full.parameters(), cfg.lr_g, cfg), _adam(D_full.parameters(), cfg.lr_d, cfg)
    G_full.train()
    D_full.train()
    record: dict[str, float] = {}
    started = time.perf_counter()
    bar = tqdm(range(cfg.full_steps), desc="G_full", disable=quiet)
    for step in bar:
        real = data.batch(torch.randint(len(data), (cfg.batch_size,), generator=rng), device)
        z_center = torch.randn(cfg.batch_size, cfg.z_center, generator=rng).to(device)
        z_edge = torch.randn(cfg.batch_size, cfg.z_edge, generator=rng).to(device)
        g_loss, g_stats, y_full, y_glue = generator_loss(D_full, inverter, G_center, G_full, z_center, z_edge, cfg)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        d_loss, d_stats = discriminator_loss(D_full, real, y_full, y_glue, cfg.gamma)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        done = step + 1
        if not (torch.isfinite(d_loss) and torch.isfinite(g_loss)):
            raise FloatingPointError(f"G_full: non-finite loss at step {done}")
        if done % cfg.log_every == 0 or done == cfg.full_steps:
            record = {"stage": "full", "step": done, "loss_D": d_loss.item(), "loss_G": g_loss.item(), **g_stats,
                      **d_stats, "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
            if log:
                log.write(record)
            bar.set_postfix(D=f"{d_loss.item():.3f}", adv=f"{g_stats['adv_G']:.3f}", lat=f"{g_stats['latent_l1']:.3f}")
        if sample is not None and (done % cfg.sample_every == 0 or done == cfg.full_steps):
            sample(done)
    frozen(G_full)
    frozen(D_full)
    return record


def _sample_full(G_full: Generator, z: torch.Tensor, path: Path) -> None:
    was_training = G_full.training
    G_full.eval()
    with torch.no_grad():
        images = G_full(z)
    G_full.train(was_training)
    save_grid(images, path, nrow=8, scale=2)


def train_scgan(cfg: SCGANConfig, run_dir: Path, quiet: bool = False) -> Path:
    """All three stages; writes config.json, log.jsonl, samples/*.png and scgan.safetensors into `run_dir`."""
    cfg.validate()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # module initialisation only
    data = load_dataset(cfg.data, "train", cfg.data_dir)
    if tuple(data.shape) != tuple(cfg.shape):
        raise ValueError(f"data set {data.name} has samples {data.shape}, config says {cfg.shape}")
    modules = build_scgan(cfg)
    for module in modules.values():
        module.to(device)
    rng = torch.Generator().manual_seed(cfg.seed)
    run = RunDir(run_dir)
    run.write_config(cfg)
    log = run.log()
    samples = run.samples
    summary: dict[str, Any] = {}

    summary["patch_gan"] = train_patch_gan(modules["G_center"], modules["D_center"], data, cfg, rng, device, log,
                                           quiet)  # fmt: skip
    z_fixed = torch.randn(64, cfg.z_center + cfg.z_edge, generator=torch.Generator().manual_seed(cfg.seed + 2))
    z_fixed = z_fixed.to(device)
    with torch.no_grad():
        save_grid(modules["G_center"](z_fixed[:, : cfg.z_center]), samples / "patch-gan.png", nrow=8, scale=4)
    summary["patch_dfi"] = train_patch_inverter(modules["inverter"], modules["G_center"], cfg, rng, device, log, quiet)
    test_patches = crop(load_dataset(cfg.data, "test", cfg.data_dir).batch(torch.arange(32), device), cfg)
    with torch.no_grad():
        recon = modules["G_center"](modules["inverter"](test_patches))
    pairs = torch.stack([test_patches, recon], 1).flatten(0, 1)
    save_grid(pairs, samples / "patch-dfi-test.png", nrow=16, scale=4)

    def sample(step: int) -> None:
        _sample_full(modules["G_full"], z_fixed, samples / f"full-step-{step:06d}.png")

    summary["full"] = train_full_generator(modules, data, cfg, rng, device, log, quiet, sample)
    return save_checkpoint(run.final_weights(cfg.kind), modules, {}, asdict(cfg), cfg.full_steps, extra=summary)


def load_scgan(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, nn.Module], SCGANConfig]:
    """Modules of an SCGAN checkpoint (the run's or the bundle's, which holds only the inverter and G_full),
    frozen and in eval mode; modules absent from the file are left out of the result."""
    from safetensors import safe_open

    config = config_from_dict(read_metadata(path)["config"], expected=SCGANConfig)
    modules = build_scgan(config)
    with safe_open(str(path), framework="pt") as handle:
        present = {key.split(".", 1)[0] for key in handle.keys()}  # noqa: SIM118 (safe_open is not a dict)
    modules = {name: module for name, module in modules.items() if name in present}
    load_checkpoint(path, modules)
    return {name: frozen(m.to(device)) for name, m in modules.items()}, config


def load_outpainter(path: str | Path, device: str | torch.device = "cpu") -> tuple[Outpainter, SCGANConfig]:
    modules, config = load_scgan(path, device)
    return frozen(Outpainter(modules["inverter"], modules["G_full"])), config  # type: ignore[return-value,arg-type]
