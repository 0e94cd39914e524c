"""Inverters of a trained GAN (IJCV sec. 3 and Table 1): DFI and its ablations, trained with G (and D) frozen.

| method       | image → features                      | loss                                  | data             |
|--------------|---------------------------------------|---------------------------------------|------------------|
| `dfi`        | the GAN's frozen D^f                  | latent d(z, CN(D^f(G(z)))), eq. 5     | fresh z per step |
| `dfi_image`  | the GAN's frozen D^f                  | image ‖G(CN(D^f(x))) − x‖², sec. 4.4  | real train split |
| `enc_latent` | D's architecture, fresh and trainable | latent, eq. 5                         | fresh z per step |
| `enc_image`  | D's architecture, fresh and trainable | image, eq. 3 (iGAN's encoder)         | real train split |

`features.network = "classifier"` (IJCV sec. 4.6, "DFI – VGG16") puts a frozen classifier's penultimate features
in D^f's place for `dfi` / `dfi_image`, with the same CN (`FeatureExtractorConfig.of_classifier`; CLI
`--feature-network classifier --feature-classifier CKPT`); the inverter checkpoint stores the classifier's
weights, so it rebuilds from its config alone like any other.

Every method ends in the same connection network CN, so the four differ only in the two ablated choices
("encoder trained from scratch vs D^f + CN", "image vs latent loss"). The "opt" variants are these inverters
followed by `dfi_core.refinement.refine` (eq. 2). Their scores live one layer up, in training/evaluation/
(reconstruction.py, on the shared scoring core scoring.py).

Shapes: x [N, C, H, W] float32 [-1, +1] (or points [N, D]); z, ẑ [N, z_dim].
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from training.core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from training.core.config import config_from_dict, from_dict, register_config, to_dict
from training.core.plotting import save_grid, save_points
from training.core.runs import RunDir
from training.core.torch_utils import frozen, resolve_device
from training.datasets import Dataset, load_dataset
from training.datasets.config import DataConfig
from training.gan.config import GANConfig
from training.gan.model import load_generator_and_discriminator
from training.gan.networks import Discriminator, Generator
from training.inversion.adapter import GANAdapter, GANSource, ZooAdapter, feature_dim_of, open_feature_classifier
from training.inversion.networks import (
    ClassifierFeatures,
    ConnectionNetwork,
    ConnectionNetworkConfig,
    FeatureExtractorConfig,
)

METHODS = ("dfi", "dfi_image", "enc_latent", "enc_image")
CLASSIFIER_METHODS = ("dfi", "dfi_image")  # frozen features: the methods a pretrained classifier fits (4.6)
LATENT_LOSSES = ("mse", "l1")
SAMPLE_IMAGES = 16  # fixed test images shown in samples/step-*.png
HELDOUT = 256  # fixed generated pairs and test images scored at every log step


@register_config
@dataclass
class InverterConfig:
    gan_checkpoint: str = ""  # a zoo GAN's checkpoint; or `source` (a GAN of the user's) with `data`
    method: str = "dfi"
    features: FeatureExtractorConfig = field(default_factory=FeatureExtractorConfig)
    hidden: int = 1024  # CN width (IJCV sec. 4: FC 1024 – GN – LReLU – FC 1024 – GN – LReLU – FC |z|)
    depth: int = 2  # CN hidden layers (Table 7: two is the paper's default)
    latent_loss: str = "mse"  # d(z, ẑ) of eq. 5: "mse" (squared L2 / |z|) or "l1"
    steps: int = 20_000
    batch_size: int = 64
    # Adam at 1e-3 (Kingma & Ba's default), β = (0.9, 0.999), cosine-decayed to 0. The paper gives no CN optimiser.
    # CN is a GroupNorm MLP regressing z from fixed features, a well-conditioned supervised problem where 1e-3 is
    # the standard stable rate (the GAN's β1 = 0.5 is for the adversarial game, not needed here). DFI draws fresh
    # z every step, so the gradient noise never shrinks by itself: decaying the rate to 0 averages it out at the
    # end instead of leaving the weights bouncing at the noise floor. The encoders use the same settings because
    # Table 1's comparison keeps hyper-parameters identical across methods (sec. 4.1).
    lr: float = 1e-3
    seed: int = 0
    log_every: int = 100
    sample_every: int = 2_000
    device: str = "auto"
    source: GANSource | None = None  # a GAN that is not of the zoo (training.inversion.adapter.GANSource)
    data: DataConfig | None = None  # with `source`: the data set of its images (test split, image-loss methods)
    kind: str = field(default="inverter", init=False)

    def validate(self, gan: GANConfig | None = None) -> GANConfig | None:
        """Cross-field checks (and the taps against a zoo GAN's discriminator); returns the zoo GAN's config, or
        None for a user's GAN (`source`), whose feature names are checked when its adapter opens."""
        return validate_inverter_config(self, gan)

    @property
    def uses_latent_loss(self) -> bool:
        return self.method in ("dfi", "enc_latent")

    @property
    def frozen_features(self) -> bool:
        return self.method in ("dfi", "dfi_image")


def read_gan_config(checkpoint: str | Path) -> GANConfig:
    try:
        return config_from_dict(read_metadata(checkpoint)["config"], expected=GANConfig)
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error}") from None


def _feature_names(gan: GANConfig) -> list[str]:
    with torch.device("meta"):  # names only: no weights allocated, no draw from the global RNG
        return Discriminator(replace(gan.discriminator, extra_feature_dim=0)).feature_names


def validate_inverter_config(config: InverterConfig, gan: GANConfig | None = None) -> GANConfig | None:
    """Cross-field checks, raised before any work starts; returns the GAN's config (read from its checkpoint).
    `InverterConfig.validate` is this function."""
    problems = []
    if config.method not in METHODS:
        problems.append(f"method must be one of {', '.join(METHODS)}; got {config.method!r}")
    if config.latent_loss not in LATENT_LOSSES:
        problems.append(f"latent loss must be one of {', '.join(LATENT_LOSSES)}; got {config.latent_loss!r}")
    counts = {
        "steps": config.steps,
        "batch size": config.batch_size,
        "log_every": config.log_every,
        "sample_every": config.sample_every,
        "depth": config.depth,
        "pool size": config.features.pool_size,
    }
    problems += [f"{name} must be ≥ 1, got {value}" for name, value in counts.items() if value < 1]
    groups = ConnectionNetworkConfig.groups
    if config.hidden < 4 * groups or config.hidden % groups:
        # GroupNorm turns a group of one channel into a constant and a group of two into ±1 (the sign of their
        # difference), nearly binary and ill-conditioned: float rounding grew ~20× in ẑ (batch-of-64 vs one-by-one
        # test); four channels per group is the least that behaves.
        problems.append(f"hidden must be a multiple of CN's {groups} GroupNorm groups and ≥ {4 * groups} "
                        f"(≥ 4 channels per group), got {config.hidden}")  # fmt: skip
    if not config.lr > 0:
        problems.append(f"lr must be > 0, got {config.lr}")
    problems += config.features.problems()
    if config.features.uses_classifier:
        if config.method not in CLASSIFIER_METHODS:
            problems.append(f"with classifier features (features.network 'classifier') the method must be one of "
                            f"{', '.join(CLASSIFIER_METHODS)} (frozen features); {config.method} trains D's "
                            "architecture from scratch instead")  # fmt: skip
        if config.source is not None:
            problems.append("classifier features are implemented for a zoo GAN (--gan) only, not for a GAN source")
    if bool(config.gan_checkpoint) == (config.source is not None):
        problems.append("give exactly one GAN: a zoo checkpoint (gan_checkpoint) or a source (torch code / ONNX)")
    if config.source is not None and config.data is None:
        problems.append("a GAN source needs `data`: the data set whose test images it is scored on")
    if problems:
        raise ValueError("invalid inverter config: " + "; ".join(problems))
    if config.source is not None:
        config.source.validate()
        return None
    gan = gan or read_gan_config(config.gan_checkpoint)
    if config.features.uses_classifier:
        assert config.features.classifier is not None
        shape = tuple(config.features.classifier.read_model().shape)
        if shape != tuple(gan.generator.shape):
            raise ValueError(f"invalid inverter config: the feature classifier {config.features.classifier.checkpoint} "
                             f"takes images {shape}, but the GAN's are {tuple(gan.generator.shape)}")  # fmt: skip
        return gan
    names = _feature_names(gan)
    unknown = [tap for tap in config.features.taps if tap not in names]
    if unknown:
        raise ValueError(f"invalid inverter config: unknown tap(s) {unknown}; the discriminator has {names}")
    return gan


class Inverter(nn.Module):
    """x [N, C, H, W] → ẑ [N, z_dim]: features (D^f, a fresh encoder of D's architecture, or a frozen classifier's
    penultimate features) then CN.

    A plain forward with no data-dependent control flow, so it traces to ONNX as is.
    """

    def __init__(self, features: nn.Module, connection_network: ConnectionNetwork, frozen_features: bool):
        super().__init__()
        self.frozen_features = frozen_features
        self.features = features
        self.connection_network = connection_network
        if frozen_features:
            features.requires_grad_(False)
            features.eval()

    def train(self, mode: bool = True) -> Inverter:
        super().train(mode)
        if self.frozen_features:
            # DFI keeps D as the GAN left it (sec. 3): eval-mode batch norm, no spectral-norm power iterations.
            self.features.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.connection_network(self.features(x))


def build_inverter(
    config: InverterConfig, gan: GANConfig | GANAdapter, discriminator: Discriminator | None = None
) -> Inverter:
    """The inverter of `config.method` on a GAN adapter (`training.inversion.adapter`; a zoo GANConfig is wrapped
    in a `ZooAdapter` over `discriminator`, None → an untrained D of the architecture, for loading weights into).
    dfi/dfi_image wrap the adapter's frozen D^f; the enc_* methods get `fresh_features()`, the same architecture
    freshly initialised (Table 1: "encoder trained from scratch", same architecture as D^f + CN)."""
    adapter = gan if isinstance(gan, GANAdapter) else ZooAdapter.build(gan, config.features, None, discriminator)
    features = adapter.features if config.frozen_features else adapter.fresh_features()
    if config.features.uses_classifier and not isinstance(features, ClassifierFeatures):
        raise ValueError("the inverter config asks for classifier features (features.network 'classifier'), but "
                         f"the GAN adapter's features are {type(features).__name__}: open it with "
                         "open_adapter(config)")  # fmt: skip
    size = ConnectionNetworkConfig(feature_dim_of(features, adapter.image.shape), adapter.latent.size,
                                   hidden=config.hidden, depth=config.depth)  # fmt: skip
    cn = ConnectionNetwork(size)
    return Inverter(features, cn, frozen_features=config.frozen_features)


def latent_loss(z_hat: torch.Tensor, z: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """d(z, ẑ) of eq. 5, averaged over batch and coordinates."""
    return F.mse_loss(z_hat, z) if kind == "mse" else F.l1_loss(z_hat, z)


def image_loss(G: nn.Module, z_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """‖G(ẑ) − x‖² of eq. 3, averaged over batch and pixels; gradients flow through the frozen G into ẑ."""
    return F.mse_loss(G(z_hat), x)


def load_gan_split(gan: GANConfig, split: str) -> Dataset:
    """The `split` of the data set the GAN was trained on (a `Dataset` of torch tensors)."""
    return load_dataset(gan.data.name, split, gan.data.data_dir, gan.data.size, gan.data.channels)


@torch.no_grad()
def infer_latents(inverter: nn.Module, x: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """ẑ [N, z_dim] for images x [N, ...] (inverter in eval mode), in chunks: the start of refinement (eq. 2)."""
    return torch.cat([inverter(x[i : i + batch]) for i in range(0, len(x), batch)])


def save_comparison(versions: list[torch.Tensor], path: str | Path, per_row: int = 4) -> Path:
    """One grid with the versions of each image side by side (e.g. real | G(ẑ) | G(ẑ_opt)), `per_row` images
    per grid row; [N, C, H, W] each, all N equal."""
    tiles = torch.stack([v.detach().cpu() for v in versions], dim=1).flatten(0, 1)  # image i's versions adjacent
    scale = 2 if tiles.shape[-1] <= 32 else 1
    return save_grid(tiles, path, nrow=per_row * len(versions), scale=scale)


def _save_samples(inverter: Inverter, G: Generator, x: torch.Tensor, path: Path, reference: torch.Tensor) -> None:
    was_training = inverter.training
    inverter.eval()
    with torch.no_grad():
        recon = G(inverter(x))
    inverter.train(was_training)
    if x.dim() == 4:
        save_comparison([x, recon], path)
    else:  # points (IJCV Fig. 7): reconstructions of test points over the real test points
        save_points(recon, path, reference=reference.cpu().numpy())


@dataclass
class _Heldout:
    z: torch.Tensor  # [HELDOUT, z_dim] fixed latents
    fake: torch.Tensor  # G(z)
    real: torch.Tensor  # first HELDOUT test samples


def _heldout_set(adapter: GANAdapter, test: Dataset, seed: int, device: torch.device) -> _Heldout:
    z = adapter.sample_z(HELDOUT, torch.Generator().manual_seed(seed + 1)).to(device)
    with torch.no_grad():
        fake = adapter.generator(z)
    return _Heldout(z, fake, test.batch(torch.arange(min(HELDOUT, len(test))), device))


@torch.no_grad()
def _heldout_metrics(inverter: Inverter, G: Generator, held: _Heldout) -> dict[str, float]:
    """Both objectives on fixed data: latent error on generated pairs, image MSE on test images."""
    was_training = inverter.training
    inverter.eval()
    latent = (inverter(held.fake) - held.z).pow(2).mean().item()
    image = (G(inverter(held.real)) - held.real).pow(2).mean().item()
    inverter.train(was_training)
    return {"heldout_latent_error": latent, "heldout_image_mse": image}


def open_adapter(config: InverterConfig, device: str | torch.device = "cpu") -> GANAdapter:
    """The GAN of an inverter config as an adapter, G and D^f frozen on `device`: a zoo checkpoint, or the user's
    torch code or ONNX graphs (`config.source`). The one way every inverter sees its GAN."""
    if config.source is None:
        gan = read_gan_config(config.gan_checkpoint)
        G, D, _ = load_generator_and_discriminator(config.gan_checkpoint, str(device))
        classifier = open_feature_classifier(config.features, device) if config.features.uses_classifier else None
        return ZooAdapter.build(gan, config.features, G, D, classifier)
    if config.source.kind == "memory":
        raise ValueError(f"this inverter was trained on a GAN built in memory ({config.source.generator}, "
                         f"{config.source.discriminator}), which no file rebuilds: pass that GAN's adapter, "
                         "load_inverter_module(path, adapter=adapter_from_modules(G, D, ...)), or train from "
                         "factories (a GANSource of kind 'torch'): that checkpoint rebuilds its GAN")  # fmt: skip
    config.source.check_files()  # the weights / graphs CN was trained on, not files changed since (sha256)
    if config.source.kind == "torch":
        from training.inversion.torch_code import open_torch_adapter

        return open_torch_adapter(config.source, config.data, device, pool_size=config.features.pool_size)
    from training.inversion.onnx_graphs import open_onnx_adapter

    return open_onnx_adapter(config.source, config.data, device, pool_size=config.features.pool_size)


def adapter_record(adapter: GANAdapter) -> dict[str, Any]:
    """What an inverter checkpoint records of its GAN (`extra`): the zoo's GAN config (as before the adapter), or
    the contracts and source of a user's GAN."""
    if isinstance(adapter, ZooAdapter) and adapter.gan is not None:
        return {"gan_config": to_dict(adapter.gan)}
    return {"gan_adapter": {"latent": asdict(adapter.latent), "image": asdict(adapter.image), "source": adapter.source}}


def load_adapter_split(adapter: GANAdapter, split: str) -> Dataset:
    """The `split` of the adapter's data set; its sample shape must be the adapter's image contract."""
    data = adapter.data
    if data is None:
        raise ValueError("this GAN adapter names no data set: pass --data (and --data-dir) for its test images")
    dataset = load_dataset(data.name, split, data.data_dir, data.size, data.channels)
    if tuple(dataset.shape) != tuple(adapter.image.shape):
        raise ValueError(f"data set {data.name} has samples {tuple(dataset.shape)} but the GAN's images are "
                         f"{tuple(adapter.image.shape)} (its image contract); pick matching data or "
                         "--size/--channels")  # fmt: skip
    return dataset


def _module_device(module: nn.Module) -> torch.device:
    return next((p.device for p in itertools.chain(module.parameters(), module.buffers())), torch.device("cpu"))


def source_of(adapter: GANAdapter) -> GANSource:
    """The `GANSource` an inverter config records for an adapter passed in: its own source where that is one (the
    torch-code adapter's, resolved), else a "memory" source naming the modules' classes."""
    record = {k: v for k, v in adapter.source.items() if k in {f.name for f in fields(GANSource)}}
    try:
        source = from_dict(GANSource, record)
        source.validate()
        return source
    except (TypeError, ValueError):
        name = lambda m: f"<module {type(m).__module__}.{type(m).__qualname__}>"  # noqa: E731
        return GANSource("memory", name(adapter.generator), name(adapter.features), z_dim=adapter.latent.size,
                         prior=adapter.latent.prior, value_range=tuple(adapter.image.value_range))  # fmt: skip


def with_adapter(config: InverterConfig, adapter: GANAdapter) -> tuple[InverterConfig, GANAdapter]:
    """`config` as it trains on `adapter` (a GAN built in memory, or one the caller opened already): with no GAN
    of its own, it records the adapter's source; with no `data`, the adapter's data set (and the adapter gets
    `config.data` where it has none). Neither argument is changed."""
    if not config.gan_checkpoint and config.source is None:
        config = replace(config, source=source_of(adapter))
    if config.data is None and adapter.data is not None and config.source is not None:
        config = replace(config, data=adapter.data)
    if adapter.data is None and config.data is not None:
        adapter = copy.copy(adapter)
        adapter.data = config.data
    return config, adapter


def fit_inverter(
    config: InverterConfig, run_dir: Path, quiet: bool = False, adapter: GANAdapter | None = None
) -> tuple[Path, Inverter]:
    """Train the inverter of `config.method`; returns (checkpoint path, the trained inverter in eval mode).

    `adapter`: the GAN to train on, already open — one built in memory (`adapter_from_modules` in a notebook),
    or the one the CLI opened to resolve its contracts. Without it the GAN is opened from the config
    (`open_adapter`). With it, training runs on the adapter's device, and a config that names no GAN records the
    adapter's source (`with_adapter`); the run folder is then the same as from the CLI. The config written records
    the user's files with absolute paths and their sha256 (`GANSource.pinned`). A run restarts from step 0
    (inverter runs keep no intermediate checkpoint), so its log starts afresh."""
    if adapter is not None:
        config, adapter = with_adapter(config, adapter)
    config.validate()
    if config.source is not None and not config.source.sha256:  # recorded hashes are checked, never re-taken
        config = replace(config, source=config.source.pinned())  # absolute paths, sha256 of the user's files
    classifier = config.features.classifier
    if config.features.uses_classifier and classifier is not None and not classifier.sha256:
        config = replace(config, features=replace(config.features, classifier=classifier.pinned()))
    if adapter is None:
        device = resolve_device(config.device)
        adapter = open_adapter(config, device)
    else:
        device = _module_device(adapter.generator)
    test = load_adapter_split(adapter, "test")
    train = None if config.uses_latent_loss else load_adapter_split(adapter, "train")
    G = adapter.generator
    torch.manual_seed(config.seed)  # only module initialisation (CN, the enc_* encoder) draws from the global RNG
    inverter = build_inverter(config, adapter).to(device)
    optimizer = torch.optim.Adam([p for p in inverter.parameters() if p.requires_grad], lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=0.0)
    rng = torch.Generator().manual_seed(config.seed)  # every z and batch index of training
    held = _heldout_set(adapter, test, config.seed, device)
    sample_x = test.batch(torch.arange(min(SAMPLE_IMAGES if test.is_image else 2_000, len(test))), device)

    run = RunDir(run_dir)
    run.write_config(config)
    log = run.log(fresh=True)
    log.write({"step": 0, **_heldout_metrics(inverter, G, held), "seconds": 0.0})

    def step_loss() -> torch.Tensor:
        if config.uses_latent_loss:  # eq. 5: fresh generated pairs, an unlimited training set
            z = adapter.sample_z(config.batch_size, rng).to(device)
            with torch.no_grad():
                x = G(z)
            return latent_loss(inverter(x), z, config.latent_loss)
        assert train is not None
        x = train.batch(torch.randint(len(train), (config.batch_size,), generator=rng), device)
        return image_loss(G, inverter(x), x)

    inverter.train()
    started = time.perf_counter()
    bar = tqdm(range(config.steps), desc=run_dir.name, disable=quiet)
    for step in bar:
        lr = schedule.get_last_lr()[0]
        loss = step_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        done = step + 1
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite inverter loss at step {done}: {loss.item()}")
        if done % config.log_every == 0 or done == config.steps:
            record = {"step": done, "loss": loss.item(), "lr": lr, **_heldout_metrics(inverter, G, held)}
            record["seconds"] = round(time.perf_counter() - started, 2)
            log.write(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
        if done % config.sample_every == 0 or done == config.steps:
            _save_samples(inverter, G, sample_x, run.samples / f"step-{done:06d}.png", sample_x)
    inverter.eval()
    extra = {**adapter_record(adapter), **_heldout_metrics(inverter, G, held)}
    path = save_checkpoint(run.final_weights(config.kind), {"inverter": inverter}, {}, asdict(config),
                           config.steps, extra=extra)  # fmt: skip
    return path, inverter


def train_inverter(
    config: InverterConfig, run_dir: Path, quiet: bool = False, adapter: GANAdapter | None = None
) -> Path:
    """Train and write the run folder (config.json, log.jsonl, samples/, inverter.safetensors); returns the
    checkpoint path."""
    return fit_inverter(config, run_dir, quiet, adapter)[0]


def load_inverter_module(
    path: str | Path, device: str | torch.device = "cpu", adapter: GANAdapter | None = None
) -> tuple[Inverter, InverterConfig]:
    """The inverter alone, rebuilt from its checkpoint (the GAN's config travels in it): frozen, eval mode.
    `adapter`: the GAN it was trained on, for a GAN built in memory (its source names no file to reopen)."""
    meta = read_metadata(path)
    config = config_from_dict(meta["config"], expected=InverterConfig)
    if adapter is not None:  # D^f's architecture from the adapter given (weights come next)
        inverter = build_inverter(config, adapter)
    elif config.source is not None:  # a user's GAN: its adapter rebuilds D^f's architecture (weights come next)
        inverter = build_inverter(config, open_adapter(config, device))
    else:
        if "gan_config" not in meta["extra"]:
            raise ValueError(f"{path} lacks the GAN config it was trained with")
        gan = config_from_dict(meta["extra"]["gan_config"])
        assert isinstance(gan, GANConfig)
        inverter = build_inverter(config, gan)
    load_checkpoint(path, {"inverter": inverter})
    return frozen(inverter.to(device)), config  # type: ignore[return-value]


def load_inverter_adapter(
    path: str | Path, device: str | torch.device = "cpu", adapter: GANAdapter | None = None
) -> tuple[Inverter, GANAdapter, InverterConfig]:
    """Inverter, its GAN as an adapter (G, D^f frozen, eval mode) and the inverter's config — for any GAN;
    `adapter` as for `load_inverter_module` (then returned as it is)."""
    inverter, config = load_inverter_module(path, device, adapter)
    return inverter, adapter if adapter is not None else open_adapter(config, device), config


def load_export_ready(path: str | Path, device: str | torch.device = "cpu") -> Inverter:
    """The inverter of a checkpoint with parametrisations baked into plain weights, for tracing / ONNX export.

    Spectral norm (SNGAN's D) is a parametrisation that recomputes W / σ(W) with `vdot` on every forward, which the
    ONNX exporter rejects; in eval mode σ is fixed, so the baked weights give the same ẑ. Baking happens on a
    freshly loaded module: on a deep copy, removing a parametrisation would also break the original, whose
    generated `Parametrized*` class the copy shares.
    """
    inverter, _ = load_inverter_module(path, device)  # eval mode: no spectral-norm power step while baking
    for module in inverter.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return frozen(inverter)  # type: ignore[return-value]


def load_inverter(
    path: str | Path, device: str | torch.device = "cpu", gan_checkpoint: str | Path | None = None
) -> tuple[Inverter, Generator, Discriminator, InverterConfig]:
    """Inverter, G and D (all frozen, eval mode) and the inverter's config; G and D come from
    `gan_checkpoint`, by default the one the inverter was trained on."""
    inverter, config = load_inverter_module(path, device)
    gan_path = gan_checkpoint or config.gan_checkpoint
    G, D, gan = load_generator_and_discriminator(gan_path, str(device))
    # Rebuilt, not compared as dicts: an inverter recorded before the GAN config gained fields (ema_decay, augment,
    # data.exclude_classes, ...) recorded none of them, and its GAN had their defaults.
    recorded = read_metadata(path)["extra"]["gan_config"]
    if config_from_dict(recorded, expected=GANConfig) != gan:
        raise ValueError(f"{gan_path} is not the GAN the inverter {path} was trained on (configs differ)")
    return inverter, G, D, config
