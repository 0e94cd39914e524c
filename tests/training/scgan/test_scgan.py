"""SCGAN (training/scgan/, training/export/outpaint.py): shapes, the glue operation, losses, one step, export."""

from __future__ import annotations

import pytest
import torch

from training.scgan.model import (
    Outpainter,
    SCGANConfig,
    build_scgan,
    crop,
    discriminator_loss,
    generator_loss,
    glue,
    latent_consistency,
    load_outpainter,
    train_full_generator,
    train_patch_gan,
    train_patch_inverter,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny(**overrides) -> SCGANConfig:
    values = dict(g_width=8, d_width=8, feature_dim=32, cn_hidden=128, z_center=4, z_edge=3, batch_size=4,
                  patch_steps=1, dfi_steps=1, full_steps=1, log_every=1, device="cpu")  # fmt: skip
    values.update(overrides)
    return SCGANConfig(**values)


def test_shapes() -> None:
    torch.manual_seed(0)
    cfg = tiny()
    m = build_scgan(cfg)
    z = torch.randn(5, cfg.z_center + cfg.z_edge)
    assert m["G_full"](z).shape == (5, 1, 28, 28)
    assert m["G_center"](z[:, : cfg.z_center]).shape == (5, 1, 14, 14)
    assert m["D_full"](torch.randn(5, 1, 28, 28)).shape == (5,)
    assert m["inverter"](torch.randn(5, 1, 14, 14)).shape == (5, cfg.z_center)
    out = Outpainter(m["inverter"], m["G_full"]).eval()(torch.randn(5, 1, 14, 14), torch.randn(5, cfg.z_edge))
    assert out.shape == (5, 1, 28, 28)


@pytest.mark.parametrize(("top", "left"), [(7, 7), (0, 14), (3, 5)])
def test_glue_replaces_exactly_the_patch(top: int, left: int) -> None:
    cfg = tiny(patch_top=top, patch_left=left)
    full, patch = torch.randn(2, 1, 28, 28), torch.randn(2, 1, 14, 14)
    glued = glue(full, patch, cfg)
    assert torch.equal(crop(glued, cfg), patch)
    mask = torch.ones_like(full, dtype=torch.bool)
    mask[:, :, top : top + 14, left : left + 14] = False
    assert torch.equal(glued[mask], full[mask])


def test_bad_patch_position_rejected() -> None:
    with pytest.raises(ValueError):
        tiny(patch_top=20).validate()


def test_losses_finite_and_alpha_term_zero_when_matching() -> None:
    torch.manual_seed(0)
    cfg = tiny()
    m = build_scgan(cfg)
    for module in m.values():
        module.eval()
    z_c, z_e = torch.randn(4, cfg.z_center), torch.randn(4, cfg.z_edge)
    loss, stats, y_full, y_glue = generator_loss(m["D_full"], m["inverter"], m["G_center"], m["G_full"], z_c, z_e, cfg)
    assert torch.isfinite(loss) and all(v == v for v in stats.values())
    d_loss, d_stats = discriminator_loss(m["D_full"], torch.rand(4, 1, 28, 28) * 2 - 1, y_full, y_glue, cfg.gamma)
    assert torch.isfinite(d_loss) and d_stats["r1"] >= 0
    with torch.no_grad():
        z_match = m["inverter"](crop(y_full, cfg))
    assert latent_consistency(m["inverter"], y_full, z_match, cfg).item() == pytest.approx(0.0, abs=1e-7)
    assert latent_consistency(m["inverter"], y_full, z_match + 1, cfg).item() == pytest.approx(1.0, abs=1e-5)


def test_one_training_step_each_stage() -> None:
    from training.datasets.base import Dataset

    torch.manual_seed(0)
    cfg = tiny()
    m = build_scgan(cfg)
    data = Dataset("random", "train", (torch.rand(16, 28, 28, 1) * 255).to(torch.uint8).numpy())
    rng, dev = torch.Generator().manual_seed(0), torch.device("cpu")
    before = m["G_full"].project[0].weight.clone()
    assert train_patch_gan(m["G_center"], m["D_center"], data, cfg, rng, dev, quiet=True)["step"] == 1
    assert train_patch_inverter(m["inverter"], m["G_center"], cfg, rng, dev, quiet=True)["step"] == 1
    record = train_full_generator(m, data, cfg, rng, dev, quiet=True)
    assert record["step"] == 1 and record["loss_G"] == record["loss_G"]
    assert not torch.equal(before, m["G_full"].project[0].weight)


def test_two_input_export_parity(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from dfi_core.onnx_graph import OnnxGraph
    from training.export.outpaint import export_two_input_graph, onnx_parity, parity_inputs, save_bundle_weights

    torch.manual_seed(0)
    cfg = tiny()
    m = build_scgan(cfg)
    for module in m.values():  # a few train-mode passes so spectral norm's u, v and batch-norm statistics move
        module.train()
    with torch.no_grad():
        m["D_center"](torch.randn(8, 1, 14, 14))
        m["G_full"](torch.randn(8, cfg.z_center + cfg.z_edge))
    outpainter = Outpainter(m["inverter"], m["G_full"]).eval()
    save_bundle_weights(tmp_path / "scgan.safetensors", outpainter, cfg)
    rebuilt, _ = load_outpainter(tmp_path / "scgan.safetensors")
    patch, z_edge = parity_inputs(cfg, n=8)
    assert torch.allclose(rebuilt(patch, z_edge), outpainter(patch, z_edge), atol=1e-6)
    path = export_two_input_graph(outpainter, (patch[:2], z_edge[:2]), tmp_path / "outpaint.onnx")
    graph = OnnxGraph(path, name="outpaint", providers=["CPUExecutionProvider"])
    assert graph.input_names == ["patch", "z_edge"]
    assert [list(s) for s in graph.input_shapes] == [["batch", 1, 14, 14], ["batch", cfg.z_edge]]
    errors = onnx_parity(graph, rebuilt, patch, z_edge, batch_sizes=(1, 8))
    assert max(errors.values()) <= 1e-4, errors
