"""The user's own torch GAN as a GAN adapter (issue 17, "Torch code"): DFI for a G and D that no one here wrote.

DFI (IJCV eq. 5) trains only the connection network on pairs (z, D^f(G(z))) with G and D frozen, so a GAN is
usable as soon as we can build its two modules, load their weights and read D^f off D:

    factories   `MODULE:FACTORY` (an importable module) or `path/to/gan.py:FACTORY` (a file, imported under a
                unique module name with its folder on sys.path); called with no arguments, they return nn.Modules
    weights     .safetensors, or a state dict read with torch.load(weights_only=True); a whole pickled module runs
                code when loaded, so it is refused unless the source trusts pickles (`--trust-pickle`). Loading is
                strict: a mismatch lists the missing, unexpected and mis-shaped keys
    D^f         named modules of D (`named_modules()`): `NAME` is that module's output, `NAME:input` its (first)
                input; 4-D maps are average-pooled to R × R (sec. 4.7, R of Table 5, as the zoo's taps), all are
                flattened and concatenated. Default: the input of the nn.Linear that runs last in D's forward —
                the feature vector a GAN's D ends in (e.g. after a global sum pooling, which no module marks).
                Captured with forward hooks; D stops right after the last tap (a private exception), so D's head
                and any second output never run
    contracts   |z| from G's attributes (`nz`, `z_dim`, `latent_dim`, `dim_z`), its factory module's, or G's first
                Linear / transposed convolution; the image shape from G's output on a probe batch; G's range from
                a final Tanh (-1, 1) or Sigmoid (0, 1), else measured on samples

The resolved contracts and taps are written back into the `GANSource`, which the inverter config records, so a
checkpoint rebuilds the same adapter without probing again. `adapter_from_modules` is the same for modules that
are already built (a notebook).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import itertools
import pickle
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from training.core.torch_utils import frozen
from training.datasets.config import DataConfig
from training.inversion.adapter import (
    GANAdapter,
    GANSource,
    from_target_range,
    in_target_range,
    is_file_spec,
    pool_tap,
    resolve_contracts,
)
from training.inversion.networks import FeatureExtractorConfig

LATENT_ATTRIBUTES = ("nz", "z_dim", "latent_dim", "dim_z")  # the latent size's usual names in GAN code
PROBE_BATCH = 2  # the probe forward of G and D (2, not 1: batch norm and squeeze-style code see a real batch)
LISTED_NAMES = 40  # D's module names shown by an unknown-feature error
FACTORY_SEED = 0  # the global RNG seed a factory runs under: an unweighted G rebuilds identically
DEFAULT_POOL = FeatureExtractorConfig.pool_size  # R for 4-D taps: the zoo's default (InverterConfig.features)

_imports = itertools.count()


class TorchCodeError(ValueError):
    """The user's torch code or weights cannot serve as a GAN; the message names the thing and the fix. A ValueError,
    so the CLI reports it as `error: ...` (exit 2)."""


# ------------------------------------------------------------------------------------------------ factories


@dataclass(frozen=True)
class Role:
    """G or D, for messages that name the option to fix."""

    name: str  # "G" / "D"
    option: str  # "--generator"
    weights_option: str  # "--generator-weights"


GENERATOR = Role("G", "--generator", "--generator-weights")
DISCRIMINATOR = Role("D", "--discriminator", "--discriminator-weights")


@contextlib.contextmanager
def _on_sys_path(folder: Path | None) -> Iterator[None]:
    """`folder` first on sys.path inside the block, so a user's gan.py can import its sibling files."""
    if folder is None:
        yield
        return
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _import_file(path: Path, role: Role) -> ModuleType:
    """Import a file under a unique module name (two users' `gan.py` never collide, nor shadow a real module)."""
    if not path.is_file():
        raise FileNotFoundError(f"{role.option}: the file {path} does not exist")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"_dfi_torch_code_{path.stem}_{digest}_{next(_imports)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TorchCodeError(f"{role.option}: cannot import {path} as Python code")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look their module up by name while it runs
    try:
        with _on_sys_path(path.resolve().parent):
            spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise TorchCodeError(f"{role.option}: importing {path} failed: {type(error).__name__}: {error}") from error
    return module


def _import(module: str, role: Role, cache: dict[str, ModuleType]) -> ModuleType:
    if module in cache:
        return cache[module]
    if is_file_spec(module):
        found = _import_file(Path(module), role)
    else:
        try:
            found = importlib.import_module(module)
        except Exception as error:  # ImportError with the reason, or an error in the module's own code
            raise TorchCodeError(
                f"{role.option}: cannot import module {module!r} ({type(error).__name__}: {error}); install it, run "
                "from the folder it lives in, or give a file path (path/to/gan.py:FACTORY)"
            ) from error
    cache[module] = found
    return found


@dataclass(frozen=True)
class Factory:
    """A resolved `MODULE:FACTORY`: the callable and the Python module it came from (for latent-size hints)."""

    spec: str
    function: Callable[[], Any]
    module: ModuleType | None
    role: Role

    def build(self) -> nn.Module:
        """Call the factory with no arguments under a fixed global seed (restored after), so that modules it does
        not load weights into are the same on every rebuild."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(FACTORY_SEED)
            return self.build_fresh()

    def build_fresh(self) -> nn.Module:
        """Call the factory on the global RNG as it is (the ENC_* encoders: initialised by the run's seed)."""
        folder = Path(self.module.__file__).resolve().parent if self.module and is_file_spec(self.spec) else None
        try:
            with _on_sys_path(folder):
                made = self.function()
        except Exception as error:
            raise TorchCodeError(
                f"{self.role.option} {self.spec}: calling the factory failed ({type(error).__name__}: {error}); "
                "it is called with no arguments and must return the network"
            ) from error
        if not isinstance(made, nn.Module):
            raise TorchCodeError(
                f"{self.role.option} {self.spec}: the factory returned a {type(made).__name__}, not a torch.nn.Module; "
                f"make it return {self.role.name} itself (e.g. `return MyNet()`)"
            )
        return made


def load_factory(spec: str, role: Role = GENERATOR, cache: dict[str, ModuleType] | None = None) -> Factory:
    """`MODULE:FACTORY` or `path/to/gan.py:FACTORY` (FACTORY may be dotted, e.g. `MyNet.build`) → its callable."""
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute:
        raise TorchCodeError(f"{role.option} takes MODULE:FACTORY or path/to/gan.py:FACTORY, got {spec!r}")
    module = _import(module_name, role, cache if cache is not None else {})
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            callables = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise TorchCodeError(
                f"{role.option}: {module_name} has no factory {attribute!r}; its callables: {', '.join(callables)}"
            )
        found = getattr(found, part)
    if not callable(found):
        raise TorchCodeError(f"{role.option}: {spec} is a {type(found).__name__}, not a callable factory")
    return Factory(spec, found, module, role)


# -------------------------------------------------------------------------------------------------- weights


def _state_dict_of(loaded: Any, path: Path, role: Role) -> dict[str, torch.Tensor]:
    if isinstance(loaded, nn.Module):
        return loaded.state_dict()
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):  # Lightning-style checkpoints
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        keys = sorted(map(str, loaded))[:20] if isinstance(loaded, dict) else []
        raise TorchCodeError(
            f"{role.weights_option} {path} holds a {type(loaded).__name__}"
            + (f" with keys {keys}" if keys else "")
            + f", not a state dict of tensors; save {role.name}.state_dict() (torch.save or safetensors)"
        )
    return loaded


def read_weights(path: str | Path, role: Role = GENERATOR, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch.save file. torch.load runs with weights_only=True: a file that
    pickles objects (a whole module) could run any code, so it needs `trust_pickle`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{role.weights_option}: the file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not trust_pickle:
            reason = str(error).strip().splitlines()[-1][:300]
            raise TorchCodeError(
                f"{role.weights_option} {path} is not a plain state dict: it pickles Python objects (e.g. a whole "
                f"module), and loading it runs code from the file ({reason}). Save {role.name}.state_dict() "
                "instead, or pass --trust-pickle (trust_pickle=True) if you trust the file"
            ) from None
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    return _state_dict_of(loaded, path, role)


def load_weights(module: nn.Module, path: str | Path, role: Role = GENERATOR, trust_pickle: bool = False) -> None:
    """Load `path` into `module` strictly; any mismatch is one error listing missing, unexpected, mis-shaped keys."""
    state = read_weights(path, role, trust_pickle)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs {role.name} {tuple(expected[k].shape)}"
              for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]  # fmt: skip
    if missing or unexpected or shapes:
        parts = [f"{label} ({len(keys)}): {keys[:20]}" + (" …" if len(keys) > 20 else "")
                 for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("mis-shaped", shapes)) if keys]  # fmt: skip
        raise TorchCodeError(
            f"{role.weights_option} {path} does not fit {role.name} ({role.option}'s module): "
            + "; ".join(parts)
            + ". Give the weights saved from this architecture (or the factory that built them)"
        )
    module.load_state_dict(state, strict=True)


# ------------------------------------------------------------------------------------------------------ D^f


@dataclass(frozen=True)
class Tap:
    """One part of D^f: the output (or input) of D's submodule `module`."""

    module: str
    where: str = "output"  # "output" | "input"

    @classmethod
    def parse(cls, text: str) -> Tap:
        name, sep, where = text.strip().rpartition(":")
        if not sep:
            return cls(text.strip())
        if where not in ("input", "output") or not name:
            raise TorchCodeError(f"--features: {text!r} is not NAME, NAME:input or NAME:output (a module of D)")
        return cls(name, where)

    def spelled(self) -> str:
        return self.module if self.where == "output" else f"{self.module}:input"


class _Stop(Exception):
    """Raised by the last needed tap's hook: the rest of D (its head, a second output) is not computed."""


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


class TappedFeatures(nn.Module):
    """D^f of any D: image [N, C, H, W] (in D's range) → the taps, 4-D maps average-pooled to R × R, each flattened,
    concatenated [N, F] (sec. 4.7; R = `pool_size`, Table 5).

    Hooks are registered for one forward and removed after it, so a deep copy of this module (the ONNX exporter
    makes one) holds no hook of the original. Under torch.onnx.export the hooks run as plain Python while tracing;
    the TorchScript exporter never records the ops after the stop, the dynamo exporter (torch.export) traces D to
    its end and drops the ops no tap needs: either way the graph ends at the last tap."""

    def __init__(self, discriminator: nn.Module, taps: tuple[Tap, ...], pool_size: int = DEFAULT_POOL) -> None:
        super().__init__()
        if not taps:
            raise TorchCodeError("D^f needs at least one feature tap")
        if pool_size < 1:
            raise TorchCodeError(f"D^f's pool size R must be ≥ 1, got {pool_size}")
        self.discriminator, self.taps, self.pool_size = discriminator, tuple(taps), pool_size
        check_taps(discriminator, self.taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        captured: dict[int, list[torch.Tensor]] = {}

        def keep(index: int, value: Any) -> None:
            if index in captured:  # a module called twice (weight sharing): its first call is the tap
                return
            tensors = _tensors(value)
            if not tensors:
                raise TorchCodeError(
                    f"D^f tap {self.taps[index].spelled()!r} is a {type(value).__name__}, not a tensor"
                )
            captured[index] = tensors
            # Under torch.export (the dynamo ONNX exporter) an exception unwinding through D's module calls breaks
            # its module-stack tracking, so D runs to its end there; its head's ops are then dead code, which the
            # export drops (the graph's only outputs are the taps). Eager and TorchScript tracing stop here.
            if len(captured) == len(self.taps) and not torch.compiler.is_exporting():
                raise _Stop

        handles = []
        for index, tap in enumerate(self.taps):
            module = self.discriminator.get_submodule(tap.module)
            if tap.where == "input":
                hook = _input_hook(keep, index)
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(lambda _m, _a, out, i=index: keep(i, out)))
        try:
            self.discriminator(x)
        except _Stop:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [self.taps[i].spelled() for i in range(len(self.taps)) if i not in captured]
        if missing:
            raise TorchCodeError(f"D^f taps {missing} never ran in D's forward; name modules that D's forward calls")
        parts = [t for i in range(len(self.taps)) for t in captured[i]]
        return torch.cat([pool_tap(t, self.pool_size) for t in parts], dim=1)


def _input_hook(keep: Callable[[int, Any], None], index: int) -> Callable[..., None]:
    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        keep(index, args[0] if args else next(iter(kwargs.values()), None))

    return hook


def _module_names(D: nn.Module) -> list[str]:
    return [name for name, _ in D.named_modules() if name]


def check_taps(D: nn.Module, taps: tuple[Tap, ...]) -> None:
    """Every tap names a submodule of D; else one error listing D's module names (the first LISTED_NAMES)."""
    names = _module_names(D)
    unknown = [tap.module for tap in taps if tap.module not in set(names)]
    if unknown:
        shown = ", ".join(names[:LISTED_NAMES]) + (
            f", … ({len(names) - LISTED_NAMES} more)" if len(names) > LISTED_NAMES else ""
        )
        raise TorchCodeError(f"--features: D has no module {', '.join(map(repr, unknown))}; D's modules: {shown}")


def default_tap(D: nn.Module, images: torch.Tensor) -> Tap:
    """The input of the nn.Linear that runs last in D's forward on `images` (hooks record the order of calls)."""
    order: list[str] = []
    handles = [m.register_forward_pre_hook(lambda _m, _a, n=name: order.append(n))
               for name, m in D.named_modules() if isinstance(m, nn.Linear)]  # fmt: skip
    try:
        with torch.no_grad():
            D(images)
    except Exception as error:
        raise TorchCodeError(
            f"D fails on G's images of shape {list(images.shape)} ({type(error).__name__}: {error})"
        ) from error
    finally:
        for handle in handles:
            handle.remove()
    if not order:
        raise TorchCodeError(
            "D has no nn.Linear layer that runs in its forward, so D^f has no default; name D's modules with "
            f"--features (NAME or NAME:input); D's modules: {', '.join(_module_names(D)[:LISTED_NAMES])}"
        )
    return Tap(order[-1], "input")


# ------------------------------------------------------------------------------------------------ contracts


class _LatentAsMap(nn.Module):
    """z [N, |z|] → G(z as [N, |z|, 1, 1]): DCGAN-style generators whose first layer is a transposed convolution."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z[:, :, None, None])


def _latent_candidates(G: nn.Module, module: ModuleType | None) -> Iterator[tuple[int, str]]:
    """(|z|, where it was read) in order of trust: G's attributes, its factory module's, G's first layer."""
    owners = [(G, "G")] + ([(module, module.__name__)] if module is not None else [])
    for owner, label in owners:
        for attribute in LATENT_ATTRIBUTES:
            value = getattr(owner, attribute, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                yield value, f"{label}.{attribute}"
    for name, layer in G.named_modules():  # registration order: a mapping MLP or DCGAN's first layer comes first
        if isinstance(layer, nn.Linear) and layer.in_features > 0:
            yield layer.in_features, f"the input of G's first Linear {name!r}"
            return
        if isinstance(layer, nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d) and layer.in_channels > 0:
            yield layer.in_channels, f"the input of G's first transposed convolution {name!r}"
            return


def _probe_z(size: int, device: torch.device) -> torch.Tensor:
    """The probe latents: fixed, from a private RNG (probing draws nothing from the global one)."""
    return torch.randn(PROBE_BATCH, size, generator=torch.Generator().manual_seed(0)).to(device)


def _run_generator(G: nn.Module, z: torch.Tensor) -> tuple[Any, bool]:
    """G(z), or G(z as a 1×1 map) when only that works; (output, takes_map)."""
    try:
        return G(z), False
    except Exception as first:
        try:
            return G(z[:, :, None, None]), True
        except Exception:
            raise first from None


@dataclass
class _Probe:
    generator: nn.Module  # G, or G behind _LatentAsMap
    z_dim: int
    output: torch.Tensor  # G's output on the probe batch, in G's range
    last_module: nn.Module | None  # the leaf module that ran last, and its output
    last_output: Any


@torch.no_grad()
def _probe_generator(G: nn.Module, z_dim: int | None, module: ModuleType | None, device: torch.device) -> _Probe:
    candidates = [(z_dim, "z_dim")] if z_dim is not None else list(_latent_candidates(G, module))
    if not candidates:
        raise TorchCodeError(
            "cannot tell G's latent size: G (and its factory's module) has none of the attributes "
            f"{', '.join(LATENT_ATTRIBUTES)} and no Linear or transposed convolution to read it from; pass --z-dim "
            "(z_dim= in Python)"
        )
    failures = []
    last: list[Any] = [None, None]

    def record(m: nn.Module, _args: Any, out: Any) -> None:
        last[:] = [m, out]

    leaves = [m for m in G.modules() if not any(True for _ in m.children())]
    tried: set[int] = set()
    for size, where in candidates:
        if size in tried:  # the same size from two places is tried once
            continue
        tried.add(size)
        z = _probe_z(size, device)
        handles = [m.register_forward_hook(record) for m in leaves]
        try:
            output, as_map = _run_generator(G, z)
        except Exception as error:
            failures.append(f"|z| = {size} ({where}): {type(error).__name__}: {error}")
            continue
        finally:
            for handle in handles:
                handle.remove()
        return _Probe(_LatentAsMap(G) if as_map else G, size, output, last[0], last[1])
    raise TorchCodeError(
        "G does not run on a latent batch [N, |z|] (nor [N, |z|, 1, 1]): "
        + "; ".join(failures)
        + ". Pass G's latent size with --z-dim (z_dim= in Python)"
    )


def _image_shape(output: Any, z_dim: int) -> tuple[int, int, int]:
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
    if shape is None or len(shape) != 4 or shape[0] != PROBE_BATCH or shape[1] not in (1, 3):
        got = f"shape {list(shape)}" if shape is not None else f"a {type(output).__name__}"
        raise TorchCodeError(
            f"G's output is not an image batch: got {got} for z of shape [{PROBE_BATCH}, {z_dim}]; G must return "
            "[N, C, H, W] with C = 1 or 3 (reshape inside G, e.g. `x.view(-1, 1, 28, 28)`)"
        )
    return shape[1], shape[2], shape[3]


def _known_range(probe: _Probe) -> tuple[float, float] | None:
    """A final Tanh → (-1, 1), a final Sigmoid → (0, 1) ("final": G's output is that module's output); else None,
    and `resolve_contracts` measures the range on samples of the prior."""
    if probe.last_output is probe.output:
        for span, kind in (((-1.0, 1.0), nn.Tanh), ((0.0, 1.0), nn.Sigmoid)):
            if isinstance(probe.last_module, kind):
                return span
    return None


# -------------------------------------------------------------------------------------------------- adapter


@dataclass
class TorchCodeAdapter(GANAdapter):
    """A GAN from the user's torch modules: `generator` = RangeMap ∘ G, `features` = D^f ∘ RangeMap⁻¹ (both in the
    [-1, +1] range); `taps` the resolved D^f; `discriminator_factory` rebuilds D freshly for the ENC_* methods."""

    taps: tuple[Tap, ...] = ()
    pool_size: int = DEFAULT_POOL
    discriminator_factory: Callable[[], nn.Module] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def wrap_features(self, D: nn.Module) -> nn.Module:
        """D^f of a discriminator of this architecture, reading images in [-1, +1]."""
        return from_target_range(TappedFeatures(D, self.taps, self.pool_size), self.image).to(self.device)

    def fresh_features(self) -> nn.Module:
        """D's factory called again (its own initialisation, no weights), wrapped the same way, trainable."""
        if self.discriminator_factory is None:
            raise TorchCodeError(
                "this adapter was built from D's module alone: pass discriminator_factory= to adapter_from_modules "
                "to train the ENC_* methods (an encoder of D's architecture from scratch)"
            )
        D = self.discriminator_factory()
        if not isinstance(D, nn.Module):
            raise TorchCodeError(f"D's factory returned a {type(D).__name__}, not a torch.nn.Module")
        return self.wrap_features(D.to(self.device).train().requires_grad_(True))


def _assemble(
    G: nn.Module,
    D: nn.Module,
    *,
    features: tuple[str, ...],
    pool_size: int,
    z_dim: int | None,
    prior: str,
    value_range: tuple[float, float] | None,
    data: DataConfig | None,
    device: torch.device,
    factory_module: ModuleType | None,
    discriminator_factory: Callable[[], nn.Module] | None,
    source: GANSource,
) -> TorchCodeAdapter:
    """Probe G and D, resolve the contracts and taps, freeze both on `device`; `source` receives the resolved
    fields (z_dim, value_range, features) and becomes the adapter's JSON record."""
    G, D = frozen(G.to(device)), frozen(D.to(device))
    probe = _probe_generator(G, z_dim, factory_module, device)
    contracts = resolve_contracts(probe.generator, z_dim=probe.z_dim, prior=prior,
                                  shape=_image_shape(probe.output, probe.z_dim), value_range=value_range,
                                  known_range=_known_range(probe),
                                  unknown_because="its last layer is no Tanh or Sigmoid and ", device=device,
                                  error=TorchCodeError)  # fmt: skip
    latent, image = contracts.latent, contracts.image
    generator = frozen(in_target_range(probe.generator, image).to(device))
    with torch.no_grad():
        images = generator(_probe_z(latent.size, device))
    if features:
        taps = tuple(Tap.parse(name) for name in features)
        check_taps(D, taps)
        announce = None
    else:
        taps = (default_tap(D, from_target_range(nn.Identity(), image).to(device)(images)),)
        announce = taps[0]
    adapter = TorchCodeAdapter(latent=latent, image=image, generator=generator, features=nn.Identity(), data=data,
                               taps=taps, pool_size=pool_size, discriminator_factory=discriminator_factory,
                               device=device)  # fmt: skip
    adapter.features = frozen(adapter.wrap_features(D))
    try:
        with torch.no_grad():
            feature_dim = adapter.features(images).shape[1]
    except TorchCodeError:
        raise
    except Exception as error:
        raise TorchCodeError(
            f"D fails on G's images of shape {list(images.shape)} ({type(error).__name__}: {error})"
        ) from error
    if announce is not None:
        layer = D.get_submodule(announce.module)
        print(f"D^f: the input of D's last Linear layer {announce.module!r} ({layer}), {feature_dim} features — "
              "found automatically; name other modules of D with --features")  # fmt: skip
    source.z_dim, source.value_range = latent.size, image.value_range
    source.features = tuple(tap.spelled() for tap in taps)
    adapter.source = {**asdict(source), "pool_size": pool_size}  # R lives in InverterConfig.features; recorded too
    return adapter


def open_torch_adapter(
    source: GANSource,
    data: DataConfig | None = None,
    device: str | torch.device = "cpu",
    pool_size: int = DEFAULT_POOL,
) -> TorchCodeAdapter:
    """The adapter of a `GANSource` of kind "torch" (see the module docstring), G and D^f frozen on `device`.

    Fills the source's unset z_dim, value_range and features in place with what it resolved, so the inverter
    config that records this source rebuilds the same adapter with no probing (and the default D^f is explicit).
    `pool_size` is R for 4-D taps (`InverterConfig.features.pool_size`)."""
    source.validate()
    if source.kind != "torch":
        raise TorchCodeError(f"open_torch_adapter takes a source of kind 'torch', got {source.kind!r}")
    modules: dict[str, ModuleType] = {}  # G and D from one file: imported once
    g_factory = load_factory(source.generator, GENERATOR, modules)
    d_factory = load_factory(source.discriminator, DISCRIMINATOR, modules)
    G, D = g_factory.build(), d_factory.build()
    if source.generator_weights:
        load_weights(G, source.generator_weights, GENERATOR, source.trust_pickle)
    if source.discriminator_weights:
        load_weights(D, source.discriminator_weights, DISCRIMINATOR, source.trust_pickle)
    return _assemble(G, D, features=tuple(source.features), pool_size=pool_size, z_dim=source.z_dim,
                     prior=source.prior, value_range=source.value_range, data=data, device=torch.device(device),
                     factory_module=g_factory.module, discriminator_factory=d_factory.build_fresh,
                     source=source)  # fmt: skip


def adapter_from_modules(
    G: nn.Module,
    D: nn.Module,
    features: str | tuple[str, ...] | list[str] | None = None,
    z_dim: int | None = None,
    prior: str = "normal",
    value_range: tuple[float, float] | None = None,
    data: DataConfig | None = None,
    device: str | torch.device = "cpu",
    discriminator_factory: Callable[[], nn.Module] | None = None,
    pool_size: int = DEFAULT_POOL,
) -> TorchCodeAdapter:
    """The adapter of modules already built (a notebook): the same probing, taps and contracts as the CLI's.

    G and D are frozen in place (eval mode, no gradients) and moved to `device`. `features`: D^f's taps as for
    --features ("NAME", "NAME:input", or a comma-separated string); `discriminator_factory` (no arguments → a
    fresh D) enables `fresh_features()`; `pool_size` is R for 4-D taps (sec. 4.7). Its `source` names the
    classes but not their weights, so a checkpoint trained on it cannot rebuild the GAN alone: for that, give
    factories (`GANSource`, `open_torch_adapter`). Its source is of kind "memory": `fit_inverter(config, run,
    adapter=...)` trains on it, and `load_inverter_module(path, adapter=...)` reopens that checkpoint with it."""
    names = tuple(f.strip() for f in features.split(",") if f.strip()) if isinstance(features, str) else features
    source = GANSource(kind="memory", generator=f"<module {type(G).__module__}.{type(G).__qualname__}>",
                       discriminator=f"<module {type(D).__module__}.{type(D).__qualname__}>", prior=prior)  # fmt: skip
    source.validate()
    return _assemble(G, D, features=tuple(names or ()), pool_size=pool_size, z_dim=z_dim, prior=prior,
                     value_range=value_range, data=data, device=torch.device(device), factory_module=None,
                     discriminator_factory=discriminator_factory, source=source)  # fmt: skip
