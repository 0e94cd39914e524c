"""A multi-label attribute classifier for emoji: the judge of latent edits (`training.editing.evaluate`).

One small CNN (the `ConvEncoder` trunk of the other classifiers) with 11 logits in three heads, each trained only
on the images its label is defined for (masked losses), from emoji.json's labels of the train split:

    gender   1 logit   woman (1) vs man (0)                         images with gender ∈ {man, woman}
    tone     5 logits  skin tone 1 … 5 (softmax)                    images with a skin-tone modifier (1 … 5)
    hair     5 logits  bald, red, white, curly, blond vs not (each a sigmoid)   people (`_person`) and every
                       image with a hair label; a style's negatives are people without it

Hair is rare (36 train images per style: 3 base emoji × 6 tones × 2 packs, 24 for white hair) and the test split
holds only one hair emoji (white-haired person, 12 images), so batches oversample hair images and the held-out
number for bald/red/curly/blond hair can only be their specificity. `holdout_person_hair` trains a second model
without the gender-neutral hair emoji (bald_person, red_haired_person, …) and scores its hair heads on them: the
closest thing to a held-out sensitivity the labels allow.

Images are augmented with flips, ±3 px shifts and a random 3×3 box blur: the classifier judges generated images,
which are blurrier than the drawings it learns from (its accuracy on reconstructions: training.editing.evaluate).

    python -m training train attributes --run-dir runs/attributes/emoji --threads 1
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from dfi_core.datasets import load_emoji
from dfi_core.preprocessing import to_model_range
from training.core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from training.core.config import config_from_dict, register_config
from training.core.runs import RunDir
from training.core.torch_utils import frozen
from training.gan.networks import ConvEncoder

HAIR_STYLES = ("bald", "red", "white", "curly", "blond")
TONES = (1, 2, 3, 4, 5)
GENDER = slice(0, 1)
TONE = slice(1, 6)
HAIR = slice(6, 11)
NUM_LOGITS = 11
ATTRIBUTE_KEYS = ("gender", "skin_tone", "hair", "subcategory")
# The scalar probabilities edits are judged by: P(woman), P(tone k), P(<style> hair).
PROBABILITY_NAMES = ("woman", *(f"tone{t}" for t in TONES), *HAIR_STYLES)


@register_config
@dataclass
class AttributeTrainConfig:
    shape: tuple[int, ...] = (3, 64, 64)
    width: int = 32
    feature_dim: int = 128
    steps: int = 1_500
    batch_size: int = 64
    hair_per_batch: int = 16  # of batch_size, drawn from the (rare) images with a hair label
    lr: float = 2e-3
    seed: int = 0
    log_every: int = 100
    holdout_person_hair: bool = False  # leave the gender-neutral hair emoji out of training and score on them
    kind: str = field(default="attributes", init=False)

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not 0 <= self.hair_per_batch <= self.batch_size or self.lr <= 0:
            raise ValueError("invalid attribute config: steps, batch size ≥ 1, 0 ≤ hair_per_batch ≤ batch size, lr > 0")


class AttributeClassifier(nn.Module):
    """image [N, 3, 64, 64] in [-1, 1] → logits [N, 11] (gender 0, tone 1:6, hair 6:11)."""

    def __init__(self, cfg: AttributeTrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk = ConvEncoder(tuple(cfg.shape), cfg.feature_dim, cfg.width)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.3), nn.Linear(cfg.feature_dim, NUM_LOGITS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """logits [N, 11] → probabilities [N, 11] in PROBABILITY_NAMES order (sigmoid, softmax over tones, sigmoids)."""
    return torch.cat(
        [torch.sigmoid(logits[:, GENDER]), torch.softmax(logits[:, TONE], 1), torch.sigmoid(logits[:, HAIR])], dim=1
    )


def is_person(gender: str, subcategory: str) -> bool:
    """A person emoji (the population hair labels are defined on): same rule as the eq. 9 recipes."""
    return gender in ("man", "woman", "person") and subcategory.startswith("person")


@dataclass
class AttributeLabels:
    """Per-image targets and masks (mask False: the head is not defined for the image)."""

    gender: np.ndarray  # [N] float 1 woman / 0 man
    gender_mask: np.ndarray  # [N] bool
    tone: np.ndarray  # [N] int64 0..4
    tone_mask: np.ndarray
    hair: np.ndarray  # [N, 5] float
    hair_mask: np.ndarray  # [N] bool

    def subset(self, index: np.ndarray) -> AttributeLabels:
        return AttributeLabels(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def attribute_labels(attributes: dict[str, list]) -> AttributeLabels:
    gender, tone, hair, sub = (attributes[k] for k in ATTRIBUTE_KEYS)
    return AttributeLabels(
        gender=np.array([g == "woman" for g in gender], dtype=np.float32),
        gender_mask=np.array([g in ("man", "woman") for g in gender]),
        tone=np.array([max(int(t) - 1, 0) for t in tone], dtype=np.int64),
        tone_mask=np.array([int(t) >= 1 for t in tone]),
        hair=np.array([[h == style for style in HAIR_STYLES] for h in hair], dtype=np.float32).reshape(-1, 5),
        hair_mask=np.array([is_person(g, s) or h != "none" for g, s, h in zip(gender, sub, hair, strict=True)]),
    )


def masked_loss(logits: torch.Tensor, labels: AttributeLabels) -> torch.Tensor:
    """Sum of the three heads' mean losses, each over the images it is defined for."""
    total = logits.new_zeros(())
    mask = torch.from_numpy(labels.gender_mask)
    if mask.any():
        total = total + F.binary_cross_entropy_with_logits(logits[mask, 0], torch.from_numpy(labels.gender[mask]))
    mask = torch.from_numpy(labels.tone_mask)
    if mask.any():
        total = total + F.cross_entropy(logits[mask, TONE], torch.from_numpy(labels.tone[mask]), label_smoothing=0.05)
    mask = torch.from_numpy(labels.hair_mask)
    if mask.any():
        total = total + F.binary_cross_entropy_with_logits(logits[mask, HAIR], torch.from_numpy(labels.hair[mask]))
    return total


def _augment(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=rng) < 0.5
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    dx, dy = (int(v) for v in torch.randint(-3, 4, (2,), generator=rng))
    images = torch.roll(images, shifts=(dy, dx), dims=(-2, -1))
    blur = torch.rand(images.shape[0], generator=rng) < 0.5
    blurred = F.avg_pool2d(images, 3, 1, 1, count_include_pad=False)
    return torch.where(blur.view(-1, 1, 1, 1), blurred, images)


@torch.no_grad()
def predict(model: AttributeClassifier, images: np.ndarray | torch.Tensor, batch: int = 256) -> np.ndarray:
    """Probabilities [N, 11] (PROBABILITY_NAMES) of [N, H, W, C] uint8 or [N, C, H, W] float [-1, 1] images."""
    model.eval()
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        images = to_model_range(images)
    x = torch.as_tensor(images, dtype=torch.float32)
    return torch.cat([probabilities(model(x[i : i + batch])) for i in range(0, len(x), batch)]).numpy()


def head_scores(probs: np.ndarray, labels: AttributeLabels) -> dict[str, Any]:
    """Accuracy of each head on the images it is defined for (hair: accuracy, and sensitivity where positives)."""
    out: dict[str, Any] = {}
    m = labels.gender_mask
    out["gender"] = {"n": int(m.sum()), "accuracy": _mean((probs[m, 0] > 0.5) == (labels.gender[m] > 0.5))}
    m = labels.tone_mask
    tone_probs = probs[:, 1:6]
    light_dark = m & np.isin(labels.tone, (0, 4))
    out["tone"] = {
        "n": int(m.sum()),
        "accuracy_5way": _mean(tone_probs[m].argmax(1) == labels.tone[m]),
        "within_one": _mean(np.abs(tone_probs[m].argmax(1) - labels.tone[m]) <= 1),
        "n_light_dark": int(light_dark.sum()),
        "accuracy_1_vs_5": _mean(
            (tone_probs[light_dark, 4] > tone_probs[light_dark, 0]) == (labels.tone[light_dark] == 4)
        ),
    }
    m = labels.hair_mask
    for i, style in enumerate(HAIR_STYLES):
        predicted, actual = probs[m, 6 + i] > 0.5, labels.hair[m, i] > 0.5
        out[f"hair_{style}"] = {
            "n": int(m.sum()),
            "positives": int(actual.sum()),
            "accuracy": _mean(predicted == actual),
            "sensitivity": _mean(predicted[actual]) if actual.any() else None,
            "specificity": _mean(~predicted[~actual]),
        }
    return out


def _mean(values: np.ndarray) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


def train_attributes(config: AttributeTrainConfig, run_dir: Path, quiet: bool = False) -> tuple[Path, dict[str, Any]]:
    """Train on the emoji train split; score every head on the test split. Writes metrics.json + checkpoint."""
    torch.manual_seed(config.seed)
    train = load_emoji("train", attribute_keys=ATTRIBUTE_KEYS)
    test = load_emoji("test", attribute_keys=ATTRIBUTE_KEYS)
    labels = attribute_labels(train.attributes)
    held_out = np.zeros(len(labels.gender), dtype=bool)
    if config.holdout_person_hair:
        held_out = np.array(
            [
                g == "person" and h != "none"
                for g, h in zip(train.attributes["gender"], train.attributes["hair"], strict=True)
            ]
        )
    labelled = (labels.gender_mask | labels.tone_mask | labels.hair_mask) & ~held_out
    pool = np.flatnonzero(labelled)
    hair_pool = np.flatnonzero(labelled & (labels.hair.sum(1) > 0))
    images = torch.from_numpy(to_model_range(train.images))
    model = AttributeClassifier(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
    rng = torch.Generator().manual_seed(config.seed)
    np_rng = np.random.default_rng(config.seed)
    run = RunDir(run_dir)
    run.write_config(config)
    log = run.log(fresh=True)  # a retrain in the same folder replaces the log: this run cannot resume
    model.train()
    for step in tqdm(range(config.steps), desc=run_dir.name, disable=quiet):
        index = np.concatenate(
            [
                np_rng.choice(pool, config.batch_size - config.hair_per_batch),
                np_rng.choice(hair_pool, config.hair_per_batch),
            ]
        )
        loss = masked_loss(model(_augment(images[index], rng)), labels.subset(index))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % config.log_every == 0:
            log.write({"step": step + 1, "loss": round(loss.item(), 5)})
    model.eval()
    metrics: dict[str, Any] = {
        "test": head_scores(predict(model, test.images), attribute_labels(test.attributes)),
        "test_images": len(test.images),
        "train_images_used": int(labelled.sum()),
    }
    if held_out.any():
        held = attribute_labels(train.attributes).subset(np.flatnonzero(held_out))
        metrics["held_out_person_hair"] = head_scores(predict(model, train.images[held_out]), held)
    run.metrics_path.write_text(json.dumps(metrics, indent=2))
    path = save_checkpoint(
        run.final_weights(config.kind), {"attributes": model}, {}, asdict(config), config.steps, extra=metrics
    )
    return path, metrics


def load_attributes(path: str | Path) -> tuple[AttributeClassifier, AttributeTrainConfig]:
    try:
        config = config_from_dict(read_metadata(path)["config"], expected=AttributeTrainConfig)
    except ValueError as error:
        raise ValueError(f"{path} is not an attribute-classifier checkpoint: {error}") from None
    model = AttributeClassifier(config)
    load_checkpoint(path, {"attributes": model})
    return frozen(model), config  # type: ignore[return-value]
