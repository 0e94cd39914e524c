"""Latent refinement, IJCV eq. 2: `min_z ‖G(z) − x‖²` started from an inverter's ẑ (the "opt" variants of Table 1).

Self-contained (torch only): G is any frozen module mapping [N, z_dim] → [N, ...]. The paper runs 50 iterations
(sec. 4, after Zhu et al. 2016) of Adam or L-BFGS-B; here L-BFGS is torch's (strong Wolfe line search), and the
"-B" box constraint is the optional tanh reparameterisation `bound`.
"""

from __future__ import annotations

# The implementation lives in the shared core so that the service can refine without importing `training`.
from dfi_core.refinement import DEFAULT_LR, METHODS, per_sample_loss, refine

__all__ = ["DEFAULT_LR", "METHODS", "per_sample_loss", "refine"]
