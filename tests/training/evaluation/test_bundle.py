"""The eval CLI's request checks and a tiny run on the shipped Fashion-MNIST bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.evaluation.bundle import check_request, evaluate_bundle, write_report

BUNDLE = Path(__file__).resolve().parents[3] / "models" / "fashion-mnist"


@pytest.mark.parametrize(
    ("methods", "n", "repeats", "needle"),
    [(["dfi", "enc_latent"], 10, 1, "unknown method"), (["dfi"], 1, 1, "n ≥ 2"), (["dfi"], 600, 2, "disjoint")],
)
def test_bad_requests_fail_before_any_work(methods, n, repeats, needle) -> None:
    with pytest.raises(ValueError, match=needle):
        check_request(methods, n, repeats, split_size=1000)


def test_a_small_evaluation_reproduces_the_manifests_dfi_psnr_ordering(tmp_path: Path) -> None:
    result = evaluate_bundle(BUNDLE, ["dfi", "dfi_opt"], n=32, repeats=2, refine_steps=10)
    table = result["table"]
    assert set(table) == {"dfi", "dfi_opt"} and len(result["per_repeat"]["dfi"]) == 2
    assert table["dfi_opt"]["psnr"]["mean"] > table["dfi"]["psnr"]["mean"]  # refinement helps (eq. 2)
    assert 0 < table["dfi"]["ssim"]["mean"] < 1 and table["dfi"]["psnr"]["std"] > 0
    json_path, md_path, png_path = write_report(result, tmp_path)
    assert "| dfi_opt |" in md_path.read_text() and png_path.stat().st_size > 0 and json_path.is_file()
