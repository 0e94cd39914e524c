"""Judges of an edit (IJCV sec. 4.5–4.6): what an edited image is, scored by a classifier, and the two measures
built on those scores.

    flip rate     the fraction of edited images the judge assigns the target attribute / class
    entanglement  mean |Δ| (edited vs reconstruction) of the judge's scores of the *other* attributes

For emoji the judge is the multi-label attribute classifier of `training.classifiers.attributes` (scores: P(woman),
darkness = (E[tone] − 1)/4, P(<style> hair)); for Fashion-MNIST the bundle's own classifier.onnx (scores: class
probabilities; entanglement over the classes other than source and target).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.editing.directions import direction_specs


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def flip_rate(scores: np.ndarray, target: Callable[[np.ndarray], np.ndarray]) -> float:
    """Fraction of images whose judge scores [N, K] meet the target decision (a boolean [N] of the scores)."""
    return float(np.mean(target(scores))) if len(scores) else float("nan")


def entanglement(before: np.ndarray, after: np.ndarray, others: list[int]) -> float:
    """Mean absolute change of the other attributes' scores: mean over images and the columns `others`."""
    return float(np.abs(after[:, others] - before[:, others]).mean()) if others else 0.0


@dataclass
class Judge:
    """Scores [N, K] in [0, 1] of images [N, C, H, W] in [-1, 1]; `names` are the K columns, `attributes` the
    columns entanglement is measured over (default: all); `probabilities` the raw head outputs (emoji)."""

    names: list[str]
    score: Callable[[np.ndarray], np.ndarray]
    attributes: list[int] | None = None
    probabilities: Callable[[np.ndarray], np.ndarray] | None = None

    def columns(self) -> list[int]:
        return self.attributes if self.attributes is not None else list(range(len(self.names)))


@dataclass
class Target:
    """What a supervised recipe should produce: the column it moves and the decision on the scores."""

    column: int
    decision: Callable[[np.ndarray], np.ndarray]
    label: str
    exclude: tuple[int, ...] = ()  # further columns left out of entanglement (the source class)


def emoji_judge(checkpoint: Path) -> Judge:
    import torch

    from training.classifiers.attributes import HAIR_STYLES, load_attributes, predict

    model, _ = load_attributes(checkpoint)

    def probabilities(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return predict(model, images.astype(np.float32))

    def score(images: np.ndarray) -> np.ndarray:
        p = probabilities(images)
        darkness = (p[:, 1:6] @ np.arange(5, dtype=np.float64)) / 4.0
        return np.column_stack([p[:, 0], darkness, p[:, 6:11], p[:, 5]])

    names = ["woman", "darkness", *(f"{h}_hair" for h in HAIR_STYLES), "tone5"]
    return Judge(names, score, attributes=list(range(7)), probabilities=probabilities)


def emoji_targets() -> dict[str, Target]:
    """Recipe name → target: P(woman) > ½; P(tone 5) > ½; P(<style> hair) > ½.

    Entanglement is over woman, darkness = (E[tone] − 1)/4 and the five hair probabilities, less the target's own.
    """
    targets = {"man_to_woman": Target(0, lambda s: s[:, 0] > 0.5, "P(woman) > 0.5")}
    targets["skin_light_to_dark"] = Target(7, lambda s: s[:, 7] > 0.5, "P(tone 5) > 0.5", exclude=(1,))
    for i, style in enumerate(("bald", "red", "white", "curly", "blond")):
        name = "bald" if style == "bald" else f"{style}_hair"
        targets[name] = Target(2 + i, lambda s, c=2 + i: s[:, c] > 0.5, f"P({style} hair) > 0.5")
    return targets


def fashion_judge(classifier: Any) -> Judge:
    from dfi_core.datasets import FASHION_MNIST_CLASSES

    return Judge(list(FASHION_MNIST_CLASSES), lambda images: softmax(classifier(images.astype(np.float32))))


def fashion_targets(class_names: list[str]) -> dict[str, Target]:
    """Recipe → target: the classifier's decision is the class the recipe's `with_` side selects."""
    targets = {}
    for spec in direction_specs("fashion-mnist"):
        t = next(i for i, c in enumerate(class_names) if spec.with_({"class": c}))
        s = next(i for i, c in enumerate(class_names) if spec.without({"class": c}))
        targets[spec.name] = Target(t, lambda p, t=t: p.argmax(1) == t, f"argmax = {class_names[t]}", exclude=(s,))
    return targets
