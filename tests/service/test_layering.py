"""The service never imports the training package (DEVELOPERS.md: both share only dfi_core)."""

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
