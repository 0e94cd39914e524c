"""Result pages: wall time across resumes, and the zoo page built from real (tiny) run folders."""

from __future__ import annotations

import json
from pathlib import Path

from training.classifiers.classifier import train_classifier
from training.classifiers.config import ClassifierTrainConfig
from training.classifiers.networks import ClassifierConfig
from training.datasets.config import DataConfig
from training.gan.config import gan_config
from training.gan.train import train_gan
from training.reports.pages import wall_seconds, zoo_report


def test_wall_seconds_adds_the_segments_of_a_resumed_log() -> None:
    records = [{"seconds": s} for s in (1.0, 2.0, 3.0, 0.5, 1.5)]  # resumed after 3 s, then 1.5 s more
    assert wall_seconds(records) == 4.5
    assert wall_seconds([]) == 0.0


def test_zoo_page_lists_every_scored_run(tmp_path: Path) -> None:
    import json

    from training.evaluation.samples import evaluate_samples

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
        score = evaluate_samples(ckpt, cls, n=100, device="cpu", pairs=20)
        (ckpt.parent.parent / "sample_fd.json").write_text(json.dumps(score))
    page = zoo_report(runs, tmp_path / "docs").read_text()
    assert "| dcgan | 2 | 1 |" in page and "| sngan | 2 | 1 |" in page
    assert "python -m training train gan --loss sngan" in page
    assert (tmp_path / "docs" / "zoo" / "fashion-mnist-zoo.png").is_file()
    assert (tmp_path / "docs" / "zoo" / "fashion-mnist-dcgan-losses.png").is_file()


def test_inverter_curves_plot_every_run_and_refuse_a_gan_log(tmp_path: Path) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from training.cli.app import app

    runs = {}
    for name, scale in (("dfi", 1.0), ("enc", 2.0)):
        folder = tmp_path / name
        folder.mkdir()
        records = [{"step": s, "heldout_latent_error": scale / (s + 1), "heldout_image_mse": 0.1 * scale / (s + 1)}
                   for s in range(0, 1000, 100)]  # fmt: skip
        (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        runs[name] = folder
    target = tmp_path / "curves.png"
    args = ["report", "curves", "--run", f"dfi={runs['dfi']}", "--run", f"enc={runs['enc']}", "--out", str(target)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert Image.open(target).size == (900, 300)
    gan = tmp_path / "gan"
    gan.mkdir()
    (gan / "log.jsonl").write_text(json.dumps({"step": 100, "loss_D": 1.0, "loss_G": 1.0}) + "\n")
    result = CliRunner().invoke(app, ["report", "curves", "--run", f"gan={gan}", "--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and "has no inverter log" in result.output
    assert not (tmp_path / "x.png").exists()
