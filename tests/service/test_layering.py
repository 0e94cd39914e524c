"""The service never imports the training package: both share only dfi_core. The import-linter contracts in
pyproject.toml check the same statically (run by scripts/test.sh); this checks what a running process loads."""

from __future__ import annotations

import subprocess
import sys


def test_service_modules_do_not_import_training() -> None:
    code = (
        "import sys, service.app, service.worker, service.jobs, service.refinement, service.embedded_redis; "
        "bad = sorted(m for m in sys.modules if m == 'training' or m.startswith('training.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


TORCH_ONLY = {"torch", "torchmetrics", "safetensors", "training", "onnx2torch"}


def test_service_tests_collect_without_torch() -> None:
    """The slim API image has no torch, so its tests must collect there: no module-level import of torch (or of
    the training package, which needs it) in tests/service or the root conftest. Imports inside a test function
    are fine (those tests need the worker extra). Checked once by hand in a torch-free venv
    (`pip install .[service,dev]`; pytest --collect-only tests/service: 87 tests); this keeps it true."""
    import ast
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    offenders = []
    for path in [tests / "conftest.py", *sorted((tests / "service").glob("*.py"))]:
        for node in ast.parse(path.read_text()).body:  # module level only (an `if` guard counts as guarded)
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in TORCH_ONLY]
    assert not offenders, offenders
