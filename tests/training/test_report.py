"""Result pages: wall time across resumes, and the zoo page built from real (tiny) run folders."""

from __future__ import annotations

from pathlib import Path

from training.classifier import train_classifier
from training.config import ClassifierTrainConfig, DataConfig, gan_config
from training.networks import ClassifierConfig
from training.report import wall_seconds, zoo_report
from training.training_loop import train_gan


def test_wall_seconds_adds_the_segments_of_a_resumed_log() -> None:
    records = [{"seconds": s} for s in (1.0, 2.0, 3.0, 0.5, 1.5)]  # resumed after 3 s, then 1.5 s more
    assert wall_seconds(records) == 4.5
    assert wall_seconds([]) == 0.0


def test_zoo_page_lists_every_scored_run(tmp_path: Path) -> None:
    import json

    from training.evaluate import evaluate_samples

    runs = tmp_path / "runs"
    cls, _ = train_classifier(
        ClassifierTrainConfig(DataConfig("fashion-mnist"), ClassifierConfig((1, 28, 28), 10, width=8), steps=3,
                              batch_size=16, device="cpu"),
        runs / "fashion-mnist-classifier", quiet=True,
    )  # fmt: skip
    for loss in ("dcgan", "sngan"):
        config = gan_config(DataConfig("fashion-mnist"), (1, 28, 28), loss, z_dim=8, g_width=8, d_width=8,
                            feature_dim=16, steps=2, batch_size=16, sample_every=2, device="cpu")  # fmt: skip
        ckpt = train_gan(config, runs / f"fashion-mnist-{loss}", quiet=True)
        (ckpt.parent.parent / "command.txt").write_text(f"python -m training train gan --loss {loss}\n")
        score = evaluate_samples(ckpt, cls, n=100, device="cpu")
        (ckpt.parent.parent / "sample_fd.json").write_text(json.dumps(score))
    page = zoo_report(runs, tmp_path / "docs").read_text()
    assert "| dcgan | 2 | 1 |" in page and "| sngan | 2 | 1 |" in page
    assert "python -m training train gan --loss sngan" in page
    assert (tmp_path / "docs" / "zoo" / "fashion-mnist-zoo.png").is_file()
    assert (tmp_path / "docs" / "zoo" / "fashion-mnist-dcgan-losses.png").is_file()
