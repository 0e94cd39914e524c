"""Train torch-mimicry's SNGAN (scripts/byo_gan/mimicry_sngan.py) on the Fashion-MNIST train split with the
library's own training code: `torch_mimicry.training.Trainer`, which calls the nets' own `train_step` (hinge loss,
n_dis D steps per G step), with the library's linear learning-rate decay, logger and checkpoints.

    pip install --no-deps torch-mimicry==0.1.16 && pip install tensorboard scikit-image
    python scripts/byo_gan/train_mimicry_sngan.py --steps 800 --out runs/byo_gan/mimicry-sngan

Writes OUT/G.safetensors and OUT/D.safetensors (state dicts of make_g() / make_d()), OUT/samples.png and
OUT/train.json (command, steps, seconds). One workaround outside the library: its `training.logger` imports
`torchvision.utils` for TensorBoard image grids only, and torchvision cannot be installed beside torch 2.13 here,
so when torchvision is missing an empty stand-in module is registered whose functions raise, and `vis_steps` is
set past the last step so the trainer never calls them (nothing it computes changes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mimicry_sngan import _mimicry_nets, make_d, make_g  # noqa: E402


def _torchvision_stand_in() -> None:
    try:
        import torchvision.utils  # noqa: F401
    except Exception:

        def unavailable(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("torchvision is not installed: image grids are disabled (vis_steps > num_steps)")

        package, utils = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")
        utils.make_grid = utils.save_image = unavailable  # type: ignore[attr-defined]
        package.utils = utils  # type: ignore[attr-defined]
        sys.modules.update({"torchvision": package, "torchvision.utils": utils})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-dis", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/byo_gan/mimicry-sngan"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _torchvision_stand_in()
    _mimicry_nets()  # registers the package without its __init__ (see mimicry_sngan.py)
    import torch_mimicry.training as mimicry_training

    from dfi_core.datasets import load_fashion_mnist
    from dfi_core.preprocessing import to_model_range

    torch.manual_seed(args.seed)
    G, D = make_g(), make_d()  # the wrappers hold the library's nets; the trainer drives the nets themselves
    train = load_fashion_mnist("train")
    x = torch.from_numpy(to_model_range(train.images))  # [N, 1, 28, 28] in [-1, 1]
    x = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0).repeat(1, 3, 1, 1)  # what FashionDiscriminator does
    data = torch.utils.data.TensorDataset(x, torch.from_numpy(train.labels.astype("int64")))
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    opt_d = torch.optim.Adam(D.net.parameters(), 2e-4, betas=(0.0, 0.9))  # mimicry's SNGAN example settings
    opt_g = torch.optim.Adam(G.net.parameters(), 2e-4, betas=(0.0, 0.9))
    args.out.mkdir(parents=True, exist_ok=True)
    trainer = mimicry_training.Trainer(
        netD=D.net, netG=G.net, optD=opt_d, optG=opt_g, dataloader=loader, num_steps=args.steps,
        n_dis=args.n_dis, lr_decay="linear", device=torch.device("cpu"), log_dir=str(args.out / "mimicry_log"),
        print_steps=max(1, args.steps // 20), log_steps=max(1, args.steps // 20), vis_steps=args.steps + 1,
        save_steps=args.steps,
    )  # fmt: skip
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started

    from safetensors.torch import save_file

    from training.core.plotting import save_grid

    G.eval()
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(args.out / "G.safetensors"))
    save_file({k: v.contiguous() for k, v in D.state_dict().items()}, str(args.out / "D.safetensors"))
    with torch.no_grad():
        samples = G(torch.randn(64, G.nz, generator=torch.Generator().manual_seed(1)))
    save_grid(samples, args.out / "samples.png", nrow=8, scale=2)
    record = {"command": "python " + " ".join(sys.argv), "library": "torch-mimicry 0.1.16", "steps": args.steps,
              "seconds": round(seconds, 1), "seconds_per_step": round(seconds / args.steps, 3),
              "threads": args.threads}  # fmt: skip
    (args.out / "train.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
