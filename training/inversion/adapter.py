"""The GAN adapter: the one thing DFI sees of a GAN (IJCV sec. 3.1, eq. 5).

DFI trains only the connection network CN on pairs (z, D^f(G(z))) with G and D frozen and no gradient through
either, so it needs exactly four things of a GAN, whoever wrote it:

    latent    the latent contract: size |z| and prior (z ~ N(0, I) or U(-1, 1)^|z|)
    image     the image contract: (C, H, W) and G's value range, e.g. (-1, 1) or (0, 1)
    generator z [N, |z|] float32 → image [N, C, H, W] float32 in [-1, +1]: the user's G followed by the affine
              map of its value range onto [-1, +1] (the range every metric, graph and bundle here uses)
    features  image [N, C, H, W] float32 in [-1, +1] → D^f [N, F] float32: the map back to G's range, then the
              user's D up to the feature taps (sec. 4.7), flattened

plus `fresh_features()`, the same feature extractor freshly initialised, for the ENC_* ablations of Table 1
("encoder trained from scratch"). Three kinds of adapter end in the same inverter and the same bundle:
`ZooAdapter` (a checkpoint of this project's zoo), `training.inversion.torch_code` (the user's torch modules
from importable factories) and `training.inversion.onnx_graphs` (the user's ONNX graphs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfi_core.bundle import sha256_file
from training.datasets.config import DataConfig
from training.gan.config import GANConfig
from training.gan.model import build_gan
from training.gan.networks import Discriminator
from training.inversion.networks import ClassifierFeatures, DiscriminatorFeatures, FeatureExtractorConfig

PRIORS = ("normal", "uniform")
TARGET_RANGE = (-1.0, 1.0)  # every image here: metrics, graphs, bundles (dfi_core.preprocessing.to_model_range)


SOURCE_KINDS = ("torch", "onnx", "memory")  # memory: modules built in a notebook (`adapter_from_modules`)
# The fields of a GANSource that name the user's files, per kind, with the CLI option each comes from. Their paths are
# stored absolute and each file's sha256 is recorded (`GANSource.pinned`): a run folder or an inverter checkpoint
# then names the very bytes it was trained on, and refuses a file that changed since (`GANSource.check_files`).
FILE_OPTIONS: dict[str, dict[str, str]] = {
    "torch": {"generator_weights": "--generator-weights", "discriminator_weights": "--discriminator-weights"},
    "onnx": {"generator": "--generator-onnx", "discriminator": "--discriminator-onnx"},
}
FACTORY_OPTIONS = {"generator": "--generator", "discriminator": "--discriminator"}  # kind torch: MODULE:FACTORY


def is_file_spec(module: str) -> bool:
    """A factory's module part that is a file path (`path/to/gan.py`), not an importable module name."""
    return module.endswith(".py") or "/" in module or "\\" in module


def _sha256_now(path: str | Path) -> str | None:
    return sha256_file(path) if Path(path).is_file() else None


@dataclass
class GANSource:
    """Where a GAN that is not of the zoo comes from; stored in the inverter's config, so the inverter rebuilds
    from its checkpoint alone (`open_adapter`).

    kind "torch": `generator` / `discriminator` are factories `MODULE:FACTORY` or `path/to/gan.py:FACTORY` returning
    nn.Modules; weights from safetensors or state dicts (torch.load weights_only=True; whole pickled modules only
    with `trust_pickle`); `features` names D's modules whose output is D^f, or `NAME:input` for a module's input
    (default: the input of D's last Linear, found automatically).
    kind "onnx": `generator` / `discriminator` are .onnx paths; `features` names tensors of D's graph (the graph is
    extended to output them).
    kind "memory": modules built in Python (`adapter_from_modules`); `generator` / `discriminator` only name their
    classes, so a checkpoint of it reopens only with the adapter passed in (`load_inverter_module(adapter=...)`).
    `z_dim`, `value_range` (G's output range) are read from G where None. `sha256`: field name → sha256 of the
    user's file it names (the .onnx graphs, the weights files), filled by `pinned`."""

    kind: str
    generator: str
    discriminator: str
    generator_weights: str | None = None
    discriminator_weights: str | None = None
    features: tuple[str, ...] = ()
    z_dim: int | None = None
    prior: str = "normal"
    value_range: tuple[float, float] | None = None
    trust_pickle: bool = False
    sha256: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        problems = []
        if self.kind not in SOURCE_KINDS:
            problems.append(f"source kind must be one of {SOURCE_KINDS}, got {self.kind!r}")
        if not self.generator or not self.discriminator:
            problems.append("a GAN source needs both a generator and a discriminator")
        if self.prior not in PRIORS:
            problems.append(f"latent prior must be one of {PRIORS}, got {self.prior!r}")
        if self.z_dim is not None and self.z_dim < 1:
            problems.append(f"z_dim must be ≥ 1, got {self.z_dim}")
        unknown = sorted(set(self.sha256) - set(FILE_OPTIONS.get(self.kind, {})))
        if unknown:
            problems.append(f"sha256 names fields {unknown} that hold no file of a {self.kind!r} source")
        if problems:
            raise ValueError("invalid GAN source: " + "; ".join(problems))

    def files(self) -> dict[str, tuple[str, str]]:
        """The user's files this source names: field → (path, CLI option)."""
        options = FILE_OPTIONS.get(self.kind, {})
        return {name: (getattr(self, name), option) for name, option in options.items() if getattr(self, name)}

    def pinned(self) -> GANSource:
        """A copy with every user file's path absolute (resolved) and its sha256 recorded; a torch factory given as
        `path/to/gan.py:FACTORY` gets the absolute path too. A run started from another folder, or resumed from
        one, then names the same files; a missing file is a FileNotFoundError naming its option."""
        pinned = replace(self, sha256={})
        if self.kind == "torch":
            for name in FACTORY_OPTIONS:
                module, sep, factory = getattr(self, name).rpartition(":")
                if sep and module and is_file_spec(module):
                    setattr(pinned, name, f"{Path(module).expanduser().resolve()}:{factory}")
        for name, (path, option) in self.files().items():
            resolved = Path(path).expanduser().resolve()
            if not resolved.is_file():
                raise FileNotFoundError(f"{option}: the file {path} does not exist")
            setattr(pinned, name, str(resolved))
            pinned.sha256[name] = sha256_file(resolved)
        return pinned

    def changed_files(self, other: GANSource | None = None) -> list[str]:
        """One line per file whose recorded sha256 differs from `other`'s record of the same path (default: the
        file as it is now on disk); files named at other paths are not compared (the sources then differ anyway)."""
        lines = []
        for name, (path, option) in self.files().items():
            recorded = self.sha256.get(name)
            if recorded is None or (other is not None and getattr(other, name) != path):
                continue
            now = other.sha256.get(name) if other is not None else _sha256_now(path)
            if now is None and other is None:
                lines.append(f"{option} {path} is gone (it had sha256 {recorded[:12]}…)")
            elif now is not None and now != recorded:
                lines.append(f"{option} {path} changed (sha256 {recorded[:12]}… then, {now[:12]}… now)")
        return lines

    def check_files(self, what: str = "this inverter was trained") -> None:
        """Refuse files that changed since their sha256 was recorded: a changed G or D no longer matches the
        connection network trained on it (DFI learns D^f(G(z)) → z of those very weights, eq. 5)."""
        changed = self.changed_files()
        if changed:
            raise ValueError(
                f"the GAN's files are not those {what} on: "
                + "; ".join(changed)
                + ". Restore them, or train a new inverter (in a new run folder) on the new files"
            )


@dataclass(frozen=True)
class LatentContract:
    size: int
    prior: str = "normal"  # "normal": N(0, I) (the zoo's, and eq. 5's p(z)); "uniform": U(-1, 1)^size

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"latent size must be ≥ 1, got {self.size}")
        if self.prior not in PRIORS:
            raise ValueError(f"latent prior must be one of {PRIORS}, got {self.prior!r}")

    def sample(self, n: int, rng: torch.Generator) -> torch.Tensor:
        """[n, size] float32 on the CPU, drawn from `rng` only (a resumed or repeated run draws the same z)."""
        if self.prior == "normal":
            return torch.randn(n, self.size, generator=rng)
        return torch.rand(n, self.size, generator=rng) * 2 - 1


@dataclass(frozen=True)
class ImageContract:
    shape: tuple[int, ...]  # (C, H, W); (D,) for the 2-D points of IJCV sec. 4.1
    value_range: tuple[float, float] = TARGET_RANGE  # G's own output range

    def __post_init__(self) -> None:
        low, high = self.value_range
        if not high > low:
            raise ValueError(f"image value range must have high > low, got {self.value_range}")


class RangeMap(nn.Module):
    """The affine map of [low, high] onto [new_low, new_high] (exported as one Mul and one Add; the identity when the
    ranges agree, so the zoo's graphs are unchanged)."""

    def __init__(self, source: tuple[float, float], target: tuple[float, float]) -> None:
        super().__init__()
        scale = (target[1] - target[0]) / (source[1] - source[0])
        self.identity = tuple(source) == tuple(target)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
        self.register_buffer(
            "shift", torch.tensor(target[0] - source[0] * scale, dtype=torch.float32), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.identity else x * self.scale + self.shift


class WithRange(nn.Module):
    """`module` with a range map before (`inputs`) or after (`outputs`) it."""

    def __init__(self, module: nn.Module, before: RangeMap | None = None, after: RangeMap | None = None) -> None:
        super().__init__()
        self.module, self.before, self.after = module, before, after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.before(x) if self.before is not None else x
        x = self.module(x)
        return self.after(x) if self.after is not None else x


RANGE_SAMPLES = 64  # images of the prior (seed RANGE_SEED) on which G's output range is measured
RANGE_SEED = 0
# Slack on the measured range: a tanh / sigmoid output is inside its range exactly, rounding adds a few ulps.
RANGE_SLACK = 1e-4


@torch.no_grad()
def measure_range(
    generator: nn.Module, latent: LatentContract, device: str | torch.device = "cpu"
) -> tuple[tuple[float, float] | None, float, float]:
    """G's value range told from RANGE_SAMPLES images of the prior: (the first of [0, 1], [-1, 1] that holds them
    or None, measured min, measured max). Shared by the torch-code and ONNX adapters; each words its own error."""
    images = generator(latent.sample(RANGE_SAMPLES, torch.Generator().manual_seed(RANGE_SEED)).to(device))
    low, high = float(images.min()), float(images.max())
    for span in ((0.0, 1.0), TARGET_RANGE):
        if low >= span[0] - RANGE_SLACK and high <= span[1] + RANGE_SLACK:
            return span, low, high
    return None, low, high


def in_target_range(generator: nn.Module, image: ImageContract) -> WithRange:
    """G followed by the affine map of its value range onto [-1, +1]: the `generator` of every adapter."""
    return WithRange(generator, after=RangeMap(image.value_range, TARGET_RANGE))


def from_target_range(features: nn.Module, image: ImageContract) -> WithRange:
    """D^f after the map of [-1, +1] back onto G's range (D sees images as G made them): every adapter's
    `features`."""
    return WithRange(features, before=RangeMap(TARGET_RANGE, image.value_range))


@dataclass(frozen=True)
class Contracts:
    """A user's GAN's latent and image contracts as resolved (`resolve_contracts`); `measured` is G's (min, max) on
    the prior's samples where the value range was measured rather than given or read off G's last layer."""

    latent: LatentContract
    image: ImageContract
    measured: tuple[float, float] | None = None


def resolve_contracts(
    generator: nn.Module,
    *,
    z_dim: int,
    prior: str,
    shape: tuple[int, ...],
    value_range: tuple[float, float] | None = None,
    known_range: tuple[float, float] | None = None,
    unknown_because: str = "",
    device: str | torch.device = "cpu",
    error: type[ValueError] = ValueError,
) -> Contracts:
    """The contracts of a user's G, however it came (torch code or an ONNX graph; one rule for both adapters).

    |z| and the image shape are what the caller read from G (its attributes or layers, its graph's input and output).
    G's value range: `value_range` when given (--value-range), else `known_range` (a final Tanh or Sigmoid of torch
    code), else measured on RANGE_SAMPLES images of the prior: the first of [0, 1], [-1, 1] that holds them. A range
    that is none of those, or a G that is not finite on the prior, is `error` (the caller's type, a ValueError)
    asking for --value-range; `unknown_because` starts its reason (e.g. "its last layer is no Tanh or Sigmoid and ")."""
    latent = LatentContract(z_dim, prior)
    if value_range is not None:
        return Contracts(latent, ImageContract(tuple(shape), (float(value_range[0]), float(value_range[1]))))
    if known_range is not None:
        return Contracts(latent, ImageContract(tuple(shape), known_range))
    span, low, high = measure_range(generator, latent, device)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise error(f"G's output is not finite on z from the prior (min {low}, max {high}); pass --value-range "
                    "LOW,HIGH (value_range= in Python) only once G's images are finite")  # fmt: skip
    if span is None:
        raise error(f"cannot tell G's value range: {unknown_because}its images of {RANGE_SAMPLES} z from the prior "
                    f"span [{low:.4g}, {high:.4g}], within neither [0, 1] nor [-1, 1]; pass --value-range LOW,HIGH "
                    "(value_range= in Python)")  # fmt: skip
    return Contracts(latent, ImageContract(tuple(shape), span), (low, high))


def pool_tap(h: torch.Tensor, size: int) -> torch.Tensor:
    """A 4-D tap average-pooled to size × size (sec. 4.7's R), flat [N, C·R·R]; other taps flattened as they are.

    Where R divides the map this is a plain average pool with a fixed kernel: the ONNX exporter's symbolic for
    `adaptive_avg_pool2d` needs static spatial sizes, which a user's D (padding, expand, in-place ops) can lose in
    the trace. Otherwise `adaptive_avg_pool2d`, looked up at call time so the exporter's matrix form applies
    (training.export.onnx). The zoo's DiscriminatorFeatures keeps its own pooling (its graphs stay as shipped)."""
    if h.dim() != 4:
        return h.flatten(1)
    height, width = int(h.shape[-2]), int(h.shape[-1])
    if height % size == 0 and width % size == 0:
        return nn.functional.avg_pool2d(h, (height // size, width // size)).flatten(1)
    return nn.functional.adaptive_avg_pool2d(h, size).flatten(1)


def feature_dim_of(features: nn.Module, shape: tuple[int, ...]) -> int:
    """The flat size of `features`' output for inputs of `shape`, measured in eval mode (no batch-norm or
    spectral-norm state changes) on two blank inputs; the zoo's D^f knows it already."""
    if isinstance(features, DiscriminatorFeatures | ClassifierFeatures):
        return features.out_dim
    device = next((p.device for p in features.parameters()), torch.device("cpu"))
    was_training = features.training
    features.eval()
    with torch.no_grad():
        out = int(features(torch.zeros(2, *shape, device=device)).flatten(1).shape[1])
    features.train(was_training)
    return out


@dataclass
class GANAdapter:
    """A GAN as DFI sees it (see the module docstring). Subclasses build it; `inversion.dfi` only uses these
    fields. `generator` and `features` are frozen (eval mode, no gradients) and in the [-1, +1] image range."""

    latent: LatentContract
    image: ImageContract
    generator: nn.Module
    features: nn.Module
    data: DataConfig | None = None  # the data set of its images (test split: held-out scores, samples)
    source: dict[str, Any] = field(default_factory=dict)  # how it was made, JSON-ready (checkpoint, manifest)

    @property
    def feature_dim(self) -> int:
        """F: D^f's size is whatever the taps give, so it is measured (eval mode, two blank images)."""
        return feature_dim_of(self.features, self.image.shape)

    def fresh_features(self) -> nn.Module:
        """The feature extractor's architecture freshly initialised and trainable (the ENC_* methods)."""
        raise NotImplementedError(f"{type(self).__name__} cannot rebuild its feature extractor from scratch")

    def sample_z(self, n: int, rng: torch.Generator) -> torch.Tensor:
        return self.latent.sample(n, rng)


@dataclass
class ZooAdapter(GANAdapter):
    """A GAN of this project's zoo (`training.gan`): D^f = `DiscriminatorFeatures(D, taps, R)` (sec. 4.7), or with
    `feature_config.network == "classifier"` a frozen classifier's penultimate features (`ClassifierFeatures`,
    sec. 4.6's DFI – VGG16 analogue) in D^f's place."""

    gan: GANConfig | None = None
    feature_config: FeatureExtractorConfig = field(default_factory=FeatureExtractorConfig)

    @classmethod
    def build(
        cls,
        gan: GANConfig,
        feature_config: FeatureExtractorConfig,
        G: nn.Module | None,
        D: Discriminator | None,
        classifier: nn.Module | None = None,
    ) -> ZooAdapter:
        """From a GAN config and its (loaded, frozen) G and D; D None → an untrained D of the architecture, to load
        an inverter checkpoint's weights into (the inverter checkpoint stores D^f's weights).

        With `feature_config.network == "classifier"` the features are `ClassifierFeatures` of `classifier` (a
        loaded `Classifier`, see `open_feature_classifier`), D is not used; classifier None → an untrained one of
        the architecture the config records (`features.classifier.model`), to load an inverter checkpoint into."""
        if feature_config.uses_classifier:
            features: nn.Module = classifier_features(feature_config, tuple(gan.generator.shape), classifier)
        else:
            features = DiscriminatorFeatures(D if D is not None else build_gan(gan)["D"], feature_config)
        return cls(
            latent=LatentContract(gan.generator.z_dim, "normal"),
            image=ImageContract(tuple(gan.generator.shape)),
            generator=G if G is not None else nn.Identity(),
            features=features,
            data=gan.data,
            source={"kind": "zoo"},
            gan=gan,
            feature_config=feature_config,
        )

    def fresh_features(self) -> nn.Module:
        # Without RFGAN's frozen extra encoder: its weights would not be "from scratch" (Table 1).
        assert self.gan is not None
        if self.feature_config.uses_classifier:
            raise ValueError("the ENC_* methods train D's architecture from scratch; with classifier features "
                             "(features.network 'classifier') only the frozen-feature methods dfi, dfi_image "
                             "apply")  # fmt: skip
        return DiscriminatorFeatures(Discriminator(replace(self.gan.discriminator, extra_feature_dim=0)),
                                     self.feature_config)  # fmt: skip


def open_feature_classifier(feature_config: FeatureExtractorConfig, device: str | torch.device = "cpu") -> nn.Module:
    """The frozen classifier of `feature_config.classifier`, loaded from its checkpoint: a file whose bytes differ
    from the recorded sha256 is refused (`ClassifierSource.check_file`)."""
    from training.classifiers.classifier import load_classifier

    source = feature_config.classifier
    if source is None:
        raise ValueError("features.network 'classifier' needs a classifier checkpoint (--feature-classifier)")
    source.check_file()
    classifier, _ = load_classifier(source.checkpoint, device)
    return classifier


def classifier_features(
    feature_config: FeatureExtractorConfig, shape: tuple[int, ...], classifier: nn.Module | None = None
) -> ClassifierFeatures:
    """`ClassifierFeatures` of a loaded classifier, or (None) of an untrained one of the recorded architecture; the
    classifier must take the GAN's images (`shape`, (C, H, W))."""
    source = feature_config.classifier
    if source is None:
        raise ValueError("features.network 'classifier' needs a classifier checkpoint (--feature-classifier)")
    if classifier is None:
        if source.model is None:
            raise ValueError(f"the feature classifier {source.checkpoint} has no recorded architecture "
                             "(features.classifier.model): pin it first (ClassifierSource.pinned)")  # fmt: skip
        features = ClassifierFeatures.untrained(source.model)
    else:
        features = ClassifierFeatures(classifier)  # type: ignore[arg-type]
    model_shape = features.in_shape
    if model_shape != tuple(shape):
        raise ValueError(f"the feature classifier {source.checkpoint} takes images {model_shape}, but the GAN's are "
                         f"{tuple(shape)}")  # fmt: skip
    return features
