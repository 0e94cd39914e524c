"""DFI's two networks (IJCV sec. 3.1, Fig. 1): D^f, the frozen discriminator's features as one flat vector, and
the connection network CN that maps them to the latent.

    image [N, C, H, W] float32, [-1, +1] → D^f [N, F] float32 → ẑ [N, z_dim] float32

IJCV sec. 4.6 ("Feature extractor effects") swaps D^f for a pretrained classifier's features (DFI – VGG16: Pool5)
with the same CN: `FeatureExtractorConfig.network = "classifier"` does that with a frozen classifier of this
project (`training.classifiers`), whose penultimate features [N, feature_dim] are CN's input (`ClassifierFeatures`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from dfi_core.bundle import sha256_file
from training.classifiers.networks import Classifier, ClassifierConfig
from training.gan.networks import Discriminator

FEATURE_NETWORKS = ("discriminator", "classifier")  # what D^f is: the GAN's D, or a frozen classifier (sec. 4.6)


@dataclass
class ClassifierSource:
    """The frozen classifier whose penultimate features stand in for D^f (sec. 4.6's DFI – VGG16 analogue).

    `checkpoint`: its classifier.safetensors (`python -m training train classifier`). `pinned()` records the path
    absolute, the file's sha256 and the classifier's architecture (`model`, read from the checkpoint): the inverter
    checkpoint stores the classifier's weights with CN's, so the inverter rebuilds from its own config alone, and a
    run reopening the classifier file (training, `open_adapter`) refuses one whose bytes changed since."""

    checkpoint: str
    sha256: str | None = None
    model: ClassifierConfig | None = None

    def read_model(self) -> ClassifierConfig:
        """The classifier's architecture: `model` once pinned, else read from the checkpoint's config."""
        if self.model is not None:
            return self.model
        from training.classifiers.config import ClassifierTrainConfig
        from training.core.checkpoint import read_metadata
        from training.core.config import config_from_dict

        path = Path(self.checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--feature-classifier: the classifier checkpoint {self.checkpoint} does not exist")
        try:
            return config_from_dict(read_metadata(path)["config"], expected=ClassifierTrainConfig).model
        except ValueError as error:
            raise ValueError(f"--feature-classifier {self.checkpoint}: not a classifier checkpoint ({error})") from None

    def pinned(self) -> ClassifierSource:
        """A copy with the checkpoint's path absolute, its sha256 and the classifier's architecture recorded."""

        model = self.read_model()
        path = Path(self.checkpoint).expanduser().resolve()
        return replace(self, checkpoint=str(path), sha256=sha256_file(path), model=model)

    def check_file(self, what: str = "this inverter was trained") -> None:
        """Refuse a classifier file whose bytes differ from the recorded sha256 (CN learnt the features of those
        very weights)."""

        if self.sha256 is None:
            return
        path = Path(self.checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"the feature classifier {path} is gone (it had sha256 {self.sha256[:12]}…)")
        now = sha256_file(path)
        if now != self.sha256:
            raise ValueError(f"the feature classifier {path} is not the one {what} on (sha256 "
                             f"{self.sha256[:12]}… then, {now[:12]}… now); restore it, or train a new inverter in a "
                             "new run folder")  # fmt: skip


@dataclass
class FeatureExtractorConfig:
    """What CN's input is: the discriminator's features D^f (IJCV sec. 4.7), or a frozen classifier's (sec. 4.6).

    network "discriminator": `taps` are D's named feature maps; `last` is used as is, any other tap is
    average-pooled to pool_size × pool_size (R in Table 5; R = 1 is global average pooling) and flattened; all are
    concatenated.
    network "classifier": the penultimate features of `classifier` (a `ClassifierSource`), [N, feature_dim]; it has
    no taps and no pooling, so `taps` must be empty and `pool_size` left at its default (`of_classifier` builds it).
    """

    taps: tuple[str, ...] = ("last",)
    pool_size: int = 4
    network: str = "discriminator"
    classifier: ClassifierSource | None = None

    @classmethod
    def of_classifier(cls, checkpoint: str | Path) -> FeatureExtractorConfig:
        """CN on the penultimate features of the classifier checkpoint (sec. 4.6's DFI – VGG16 analogue)."""
        return cls(taps=(), network="classifier", classifier=ClassifierSource(str(checkpoint)))

    @property
    def uses_classifier(self) -> bool:
        return self.network == "classifier"

    def problems(self) -> list[str]:
        """Cross-field problems of the feature choice (`validate_inverter_config` words them into its error)."""
        if self.network not in FEATURE_NETWORKS:
            return [f"features.network must be one of {', '.join(FEATURE_NETWORKS)}; got {self.network!r}"]
        if not self.uses_classifier:
            problems = [] if self.taps else ["features need at least one discriminator tap"]
            if self.classifier is not None:
                problems.append("features.classifier is set but features.network is 'discriminator': set network "
                                "'classifier' to use it (--feature-network classifier), or drop it")  # fmt: skip
            return problems
        problems = []
        if self.classifier is None or not self.classifier.checkpoint:
            problems.append("features.network 'classifier' needs a classifier checkpoint (features.classifier; "
                            "--feature-classifier CKPT)")  # fmt: skip
        if self.taps:
            problems.append(f"taps {list(self.taps)} are discriminator feature maps, but with features.network "
                            "'classifier' CN's input is the classifier's penultimate features, which have no taps: "
                            "give none (taps=(); leave out --taps)")  # fmt: skip
        if self.pool_size != FeatureExtractorConfig.pool_size:
            problems.append(f"pool size {self.pool_size} pools discriminator taps, but the classifier's penultimate "
                            "features are a flat vector with nothing to pool: leave pool_size at its default "
                            f"{FeatureExtractorConfig.pool_size} (leave out --pool-size)")  # fmt: skip
        return problems


class DiscriminatorFeatures(nn.Module):
    """D^f: a frozen discriminator's features as one flat vector per image. [N, C, H, W] → [N, F]."""

    def __init__(self, discriminator: Discriminator, cfg: FeatureExtractorConfig) -> None:
        super().__init__()
        unknown = set(cfg.taps) - set(discriminator.feature_names)
        if unknown:
            raise ValueError(f"unknown taps {sorted(unknown)}; the discriminator has {discriminator.feature_names}")
        self.discriminator, self.cfg = discriminator, cfg
        # Blocks run in D's order, so a tap list in another order still comes out in D's order.
        self.taps = [name for name in discriminator.feature_names if name in cfg.taps]
        with torch.no_grad():
            probe = torch.zeros(2, *discriminator.cfg.shape)
            was_training = discriminator.training
            discriminator.eval()
            self.out_dim = int(self.forward(probe).shape[1])
            discriminator.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.discriminator.features(x, self.taps)
        parts = []
        for name in self.taps:
            h = maps[name]
            if h.dim() == 4:
                h = nn.functional.adaptive_avg_pool2d(h, self.cfg.pool_size)
            parts.append(h.flatten(1))
        return torch.cat(parts, dim=1)


class ClassifierFeatures(nn.Module):
    """A frozen classifier's penultimate features in D^f's place (sec. 4.6). [N, C, H, W] in [-1, +1] → [N, F],
    F = the classifier's feature_dim; `Classifier.features` (its trunk; the head is not kept).

    Always frozen and in eval mode, whatever `train()` is called with: batch norm keeps the classifier's running
    statistics and no weight of it moves while CN trains."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.trunk = classifier.trunk
        self.in_shape = tuple(classifier.cfg.shape)  # (C, H, W) of the images it takes
        self.out_dim = int(classifier.cfg.feature_dim)
        self.requires_grad_(False)
        self.train(False)

    @classmethod
    def untrained(cls, model: ClassifierConfig) -> ClassifierFeatures:
        """The architecture alone, to load an inverter checkpoint's copy of the classifier's weights into."""
        return cls(Classifier(model))

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


@dataclass
class ConnectionNetworkConfig:
    """IJCV sec. 4 / Fig. 1: FC 1024 – GN – LeakyReLU – FC 1024 – GN – LeakyReLU – FC |z|; depth = hidden layers."""

    in_dim: int
    z_dim: int
    hidden: int = 1024
    depth: int = 2
    groups: int = 32  # GroupNorm groups (Wu & He 2018 default)


class ConnectionNetwork(nn.Module):
    """CN: D^f(x) [N, F] → ẑ [N, z_dim]."""

    def __init__(self, cfg: ConnectionNetworkConfig) -> None:
        super().__init__()
        if cfg.depth < 1 or cfg.hidden % cfg.groups:
            raise ValueError(f"connection network needs depth ≥ 1 and hidden divisible by groups, got {cfg}")
        self.cfg = cfg
        layers: list[nn.Module] = []
        width = cfg.in_dim
        for _ in range(cfg.depth):
            layers += [nn.Linear(width, cfg.hidden), nn.GroupNorm(cfg.groups, cfg.hidden), nn.LeakyReLU(0.2)]
            width = cfg.hidden
        layers.append(nn.Linear(width, cfg.z_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)
