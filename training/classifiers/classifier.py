"""Train the small per-data-set classifier: the judge of class-consistency and the feature space of the
domain Fréchet distance (Inception stands in for nothing here: its weights cannot be fetched offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from training.classifiers.config import ClassifierTrainConfig
from training.classifiers.networks import Classifier
from training.core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from training.core.config import config_from_dict, to_dict
from training.core.runs import RunDir
from training.core.torch_utils import frozen, resolve_device
from training.datasets import Dataset, load_dataset


def _augment(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and ±2 px shifts: enough to keep a small CNN honest on 60k images."""
    flip = torch.rand(images.shape[0], generator=rng) < 0.5
    images = torch.where(flip.view(-1, 1, 1, 1).to(images.device), images.flip(-1), images)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=rng))
    return torch.roll(images, shifts=(dy, dx), dims=(-2, -1))


@torch.no_grad()
def accuracy(model: Classifier, data: Dataset, device: torch.device, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(data), batch):
        index = torch.arange(start, min(start + batch, len(data)))
        correct += (model(data.batch(index, device)).argmax(1) == data.label_batch(index, device)).sum().item()
    return correct / len(data)


def train_classifier(config: ClassifierTrainConfig, run_dir: Path, quiet: bool = False) -> tuple[Path, dict[str, Any]]:
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    train = load_dataset(config.data.name, "train", config.data.data_dir)
    test = load_dataset(config.data.name, "test", config.data.data_dir)
    model = Classifier(config.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
    rng = torch.Generator().manual_seed(config.seed)
    run = RunDir(run_dir)
    run.write_config(config)
    log = run.log()
    model.train()
    for step in tqdm(range(config.steps), desc=run_dir.name, disable=quiet):
        index = torch.randint(len(train), (config.batch_size,), generator=rng)
        images = _augment(train.batch(index, device), rng)
        loss = F.cross_entropy(model(images), train.label_batch(index, device), label_smoothing=0.05)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % config.log_every == 0:
            log.write({"step": step + 1, "loss": loss.item()})
    metrics = {"test_accuracy": accuracy(model, test, device), "test_n": len(test), "classes": train.class_names}
    run.metrics_path.write_text(json.dumps(metrics, indent=2))
    path = save_checkpoint(run.final_weights(config.kind), {"classifier": model}, {}, to_dict(config),
                           config.steps, extra=metrics)  # fmt: skip
    return path, metrics


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, ClassifierTrainConfig]:
    config = config_from_dict(read_metadata(path)["config"])
    if not isinstance(config, ClassifierTrainConfig):
        raise ValueError(f"{path} is not a classifier checkpoint")
    model = Classifier(config.model)
    load_checkpoint(path, {"classifier": model})
    return frozen(model.to(device)), config  # type: ignore[return-value]
