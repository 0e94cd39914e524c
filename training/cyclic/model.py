"""Cyclic baselines of IJCV sec. 2.2 / Table 2: VAE, ALI/BiGAN and ALICE on the zoo's DCGAN backbones.

All three learn an encoder E: x → z jointly with the generator G: z → x (the zoo's `Generator`, width 64, |z| 64),
so a reconstruction is G(E(x)) — the baseline DFI is compared with.

- `vae`: E = ConvEncoder → (μ, log σ²); reparameterised z; decoder = G. Likelihood: per-pixel Bernoulli
  cross-entropy (BCE) on [0, 1] images, p = (G(z) + 1) / 2, summed over pixels; KL(q(z|x) ‖ N(0, I)) summed over z;
  both averaged over the batch. Reconstructions and sample grids use the mean (G(μ), G(z)).
- `ali`: deterministic encoder (BiGAN form) E(x) → z; joint discriminator D(x, z) = DCGAN conv trunk on x ⊕ MLP on
  z → joint MLP → logit. Standard ALI/BiGAN loss: D separates (x, E(x)) [label 1] from (G(z), z) [label 0]; G and E
  minimise the non-saturating swapped loss (labels exchanged).
- `alice`: ALI + the conditional-entropy regulariser in its explicit ALICE-l2 form (Li et al. 2017, sec. 4):
  λ · mean ‖x − G(E(x))‖² (per-pixel mean on [−1, 1]) added to the G/E loss, λ = `recon_weight`.

Run folders as the GAN loop: command.txt (CLI), config.json, log.jsonl, samples/ (G(z) grids),
reconstructions/ (input row, G(E(x)) row), checkpoints/step-*.safetensors with the config (rebuild from the file).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from training.core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from training.core.config import config_from_dict, register_config
from training.core.plotting import save_grid
from training.core.runs import RunDir
from training.core.torch_utils import resolve_device
from training.gan.networks import ConvEncoder, Generator, GeneratorConfig

MODELS = ("vae", "ali", "alice")


@register_config
@dataclass
class CyclicConfig:
    model: str = "vae"  # vae | ali | alice
    data: str = "fashion-mnist"
    data_dir: str | None = None
    shape: tuple[int, ...] = (1, 28, 28)
    z_dim: int = 64
    g_width: int = 64  # the zoo's Generator width
    e_width: int = 64  # encoder conv width (ConvEncoder)
    d_width: int = 32  # joint discriminator conv width (ALI/ALICE); half the zoo's 64 to fit 1 CPU thread
    d_hidden: int = 256  # joint discriminator MLP width
    d_dropout: float = 0.2  # ALI's discriminator dropout
    recon_weight: float = 1.0  # ALICE-l2 λ
    steps: int = 4_000
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    log_every: int = 50
    sample_every: int = 1_000
    checkpoint_every: int = 1_000
    keep_checkpoints: int = 2
    device: str = "auto"
    kind: str = field(default="cyclic", init=False)

    def validate(self) -> None:
        problems = []
        if self.model not in MODELS:
            problems.append(f"model must be one of {MODELS}, got {self.model!r}")
        if self.steps < 1 or self.batch_size < 2 or self.z_dim < 1:
            problems.append("steps ≥ 1, batch_size ≥ 2 (batch norm) and z_dim ≥ 1 are needed")
        if len(self.shape) != 3:
            problems.append(f"cyclic models need image shapes (C, H, W), got {self.shape}")
        if self.recon_weight < 0:
            problems.append("recon_weight must be ≥ 0")
        if problems:
            raise ValueError("invalid cyclic config: " + "; ".join(problems))


class JointDiscriminator(nn.Module):
    """ALI's D(x, z): DCGAN conv trunk on x (conv 4×4 s2, no norm → conv 4×4 s2, BN; LeakyReLU 0.2) → FC,
    an MLP on z, and a joint MLP on the concatenation → one logit. [N, C, H, W], [N, z] → [N]."""

    def __init__(self, cfg: CyclicConfig) -> None:
        super().__init__()
        c, size, _ = cfg.shape
        w, h, p = cfg.d_width, cfg.d_hidden, cfg.d_dropout
        self.x_net = nn.Sequential(
            nn.Conv2d(c, w, 4, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(p),
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2), nn.Dropout(p),
            nn.Flatten(), nn.Linear(2 * w * (size // 4) ** 2, h), nn.LeakyReLU(0.2), nn.Dropout(p),
        )  # fmt: skip
        self.z_net = nn.Sequential(
            nn.Linear(cfg.z_dim, h), nn.LeakyReLU(0.2), nn.Dropout(p),
            nn.Linear(h, h), nn.LeakyReLU(0.2), nn.Dropout(p),
        )  # fmt: skip
        self.joint = nn.Sequential(nn.Linear(2 * h, 2 * h), nn.LeakyReLU(0.2), nn.Dropout(p), nn.Linear(2 * h, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.x_net(x), self.z_net(z)], dim=1)).squeeze(1)


class Encoder(nn.Module):
    """E(x): ConvEncoder to z (ALI/ALICE) or to (μ, log σ²) (VAE, `encode` splits them)."""

    def __init__(self, cfg: CyclicConfig) -> None:
        super().__init__()
        self.variational = cfg.model == "vae"
        self.z_dim = cfg.z_dim
        self.net = ConvEncoder(cfg.shape, 2 * cfg.z_dim if self.variational else cfg.z_dim, cfg.e_width)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        if not self.variational:
            return out, torch.zeros_like(out)
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The point estimate used for reconstruction: μ for the VAE, E(x) otherwise."""
        return self.encode(x)[0]


def build_cyclic(cfg: CyclicConfig) -> dict[str, nn.Module]:
    modules: dict[str, nn.Module] = {
        "E": Encoder(cfg),
        "G": Generator(GeneratorConfig(shape=tuple(cfg.shape), z_dim=cfg.z_dim, width=cfg.g_width)),
    }
    if cfg.model != "vae":
        modules["D"] = JointDiscriminator(cfg)
    return modules


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over z, per sample: [N, z] → [N]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def vae_loss(
    E: Encoder, G: Generator, x: torch.Tensor, rng: torch.Generator | None = None
) -> tuple[torch.Tensor, dict]:
    """Negative ELBO per image (nats): BCE(x01 ‖ (G(z)+1)/2) summed over pixels + KL; batch mean."""
    mu, logvar = E.encode(x)
    eps = torch.randn(mu.shape, generator=rng).to(mu.device)
    z = mu + eps * (0.5 * logvar).exp()
    p = ((G(z) + 1.0) / 2.0).clamp(1e-6, 1.0 - 1e-6)
    target = (x + 1.0) / 2.0
    rec = F.binary_cross_entropy(p, target, reduction="none").flatten(1).sum(1).mean()
    kl = kl_to_standard_normal(mu, logvar).mean()
    return rec + kl, {"rec_bce": rec.item(), "kl": kl.item()}


def ali_pairs(
    E: Encoder, G: Generator, x: torch.Tensor, z: torch.Tensor
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The two joint samples ALI's discriminator sees: encoder pair (x, E(x)) and generator pair (G(z), z)."""
    return (x, E(x)), (G(z), z)


def ali_discriminator_loss(D: JointDiscriminator, enc: tuple, gen: tuple) -> torch.Tensor:
    real, fake = D(enc[0], enc[1].detach()), D(gen[0].detach(), gen[1])
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )


def ali_generator_loss(D: JointDiscriminator, enc: tuple, gen: tuple) -> torch.Tensor:
    """Non-saturating, labels swapped: E wants (x, E(x)) judged generated, G wants (G(z), z) judged real."""
    real, fake = D(*enc), D(*gen)
    return F.binary_cross_entropy_with_logits(real, torch.zeros_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.ones_like(fake)
    )


def alice_reconstruction(E: Encoder, G: Generator, x: torch.Tensor) -> torch.Tensor:
    """ALICE-l2's explicit cycle term: mean over pixels and batch of (x − G(E(x)))²."""
    return F.mse_loss(G(E(x)), x)


def make_optimizers(cfg: CyclicConfig, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
    betas = (cfg.beta1, cfg.beta2)
    eg = [*modules["E"].parameters(), *modules["G"].parameters()]
    optimizers = {"EG": torch.optim.Adam(eg, lr=cfg.lr, betas=betas)}
    if "D" in modules:
        optimizers["D"] = torch.optim.Adam(modules["D"].parameters(), lr=cfg.lr, betas=betas)
    return optimizers


def train_step(
    cfg: CyclicConfig,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    x: torch.Tensor,
    rng: torch.Generator | None = None,
) -> dict[str, float]:
    """One optimisation step of the model on a batch x ([N, C, H, W] in [−1, 1]); returns the losses."""
    E, G = modules["E"], modules["G"]
    if cfg.model == "vae":
        loss, stats = vae_loss(E, G, x, rng)  # type: ignore[arg-type]
        optimizers["EG"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["EG"].step()
        return {"loss": loss.item(), **stats}
    D = modules["D"]
    z = torch.randn(len(x), cfg.z_dim, generator=rng).to(x.device)
    enc, gen = ali_pairs(E, G, x, z)  # type: ignore[arg-type]
    d_loss = ali_discriminator_loss(D, enc, gen)  # type: ignore[arg-type]
    optimizers["D"].zero_grad(set_to_none=True)
    d_loss.backward()
    optimizers["D"].step()
    g_loss = ali_generator_loss(D, enc, gen)  # type: ignore[arg-type]
    stats = {"loss_D": d_loss.item(), "loss_EG_adv": g_loss.item()}
    if cfg.model == "alice":
        rec = alice_reconstruction(E, G, x)  # type: ignore[arg-type]
        g_loss = g_loss + cfg.recon_weight * rec
        stats["rec_l2"] = rec.item()
    optimizers["EG"].zero_grad(set_to_none=True)
    g_loss.backward()
    optimizers["EG"].step()
    return {"loss": g_loss.item(), **stats}


def load_cyclic(
    checkpoint: str | Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, nn.Module], CyclicConfig]:
    """Rebuild E, G (and D) from the checkpoint file alone; eval mode, no grad."""
    cfg = config_from_dict(read_metadata(checkpoint)["config"], expected=CyclicConfig)
    modules = build_cyclic(cfg)
    load_checkpoint(checkpoint, modules)
    for module in modules.values():
        module.to(device).eval().requires_grad_(False)
    return modules, cfg


def _save_pictures(modules: dict[str, nn.Module], sample_z: torch.Tensor, x_fixed: torch.Tensor, run: RunDir,
                   step: int) -> None:  # fmt: skip
    E, G = modules["E"], modules["G"]
    E.eval()
    G.eval()
    with torch.no_grad():
        save_grid(G(sample_z), run.samples / f"step-{step:06d}.png", nrow=8, scale=2)
        recon = G(E(x_fixed))
        save_grid(torch.cat([x_fixed, recon]), run.path / "reconstructions" / f"step-{step:06d}.png", nrow=16, scale=2)
    E.train()
    G.train()


def train_cyclic(cfg: CyclicConfig, run_dir: Path, quiet: bool = False) -> Path:
    """Train for cfg.steps steps; returns the final checkpoint."""
    from training.datasets import load_dataset

    cfg.validate()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.data, "train", cfg.data_dir)
    if tuple(data.shape) != tuple(cfg.shape):
        raise ValueError(f"data set {cfg.data} has samples {data.shape}, config says {cfg.shape}")
    modules = build_cyclic(cfg)
    for module in modules.values():
        module.to(device).train()
    optimizers = make_optimizers(cfg, modules)
    rng = torch.Generator().manual_seed(cfg.seed)
    run = RunDir(run_dir)
    run.write_config(cfg)
    log = run.log()
    sample_z = torch.randn(64, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 1)).to(device)
    test = load_dataset(cfg.data, "test", cfg.data_dir)
    x_fixed = test.batch(torch.arange(16), device)
    started, path = time.perf_counter(), None
    bar = tqdm(range(cfg.steps), desc=f"{run_dir.name} ({cfg.model})", disable=quiet)
    for step in bar:
        x = data.batch(torch.randint(len(data), (cfg.batch_size,), generator=rng), device)
        stats = train_step(cfg, modules, optimizers, x, rng)
        done = step + 1
        if not all(torch.isfinite(torch.tensor(v)) for v in stats.values()):
            raise FloatingPointError(f"non-finite loss at step {done}: {stats}")
        if done % cfg.log_every == 0 or done == cfg.steps:
            record = {"step": done, **stats, "seconds": round(time.perf_counter() - started, 2)}
            log.write(record)
            bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items()})
        if done % cfg.sample_every == 0 or done == cfg.steps:
            _save_pictures(modules, sample_z, x_fixed, run, done)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            path = save_checkpoint(run.checkpoint_path(done), modules, optimizers, asdict(cfg), done, rng,
                                   {"seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
            run.prune_checkpoints(cfg.keep_checkpoints)
    assert path is not None
    return path
