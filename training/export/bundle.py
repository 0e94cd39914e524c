"""Build a shipped model bundle from any DFI inverter checkpoint, through its GAN adapter: measure, export, check.

    python -m training export bundle --inverter DFI_RUN/inverter.safetensors \
        --classifier CLS/classifier.safetensors --name fashion-mnist [--gan RUN/checkpoints/step-010000.safetensors]

The inverter checkpoint knows its GAN (`training.inversion.dfi.open_adapter`): a checkpoint of this project's zoo
(`--gan` may name it again, and is then checked to be the one the inverter was trained on), or a user's own GAN
from torch code or ONNX graphs. Every GAN ends in the same bundle — invert.onnx, generator.onnx,
discriminator_features.onnx traced from the adapter's modules — which the service serves unchanged. Only a zoo
generator adds generator.safetensors and the manifest's `refinement` block (`training.export.onnx`); the service
refines any other bundle through generator.onnx via onnx2torch.

The manifest's metrics are measured here on the first n unseen test images of the adapter's data set (DFI and
DFI^opt, eq. 2 on the adapter's torch G), with the data set's classifier when one is given (class-consistency, FD),
and every ONNX graph is checked against torch before the command succeeds.

An inverter on a classifier's features (IJCV sec. 4.6, `features.network = "classifier"`) is refused
(`refuse_classifier_features`): the bundle format's discriminator_features.onnx is D^f of the GAN's own D by
definition (dfi_core/bundle.py), and its manifest has no field that could say it holds a classifier instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfi_core.bundle import edit_bundle, load_bundle
from training.classifiers.classifier import load_classifier
from training.core.checkpoint import read_metadata
from training.core.config import config_from_dict
from training.core.runs import RunDir
from training.evaluation.samples import flat_inversion_scores, score_inversion
from training.export.onnx import Exporter, _fold_parametrizations, check_parity, default_exporter, export_bundle
from training.export.shared_weights import share_bundle_weights
from training.inversion.adapter import GANAdapter, ZooAdapter
from training.inversion.dfi import (
    InverterConfig,
    adapter_record,
    load_adapter_split,
    load_export_ready,
    load_inverter,
    load_inverter_adapter,
    open_adapter,
    read_gan_config,
)
from training.inversion.networks import ClassifierFeatures

INVERTER_FILE = "inverter.safetensors"
# Where the dynamo exporter cannot go, the TorchScript one still can. A GAN given as ONNX graphs
# (training.inversion.onnx_graphs) reaches torch as onnx2torch modules, whose Reshape branches on the values of its
# shape tensor (`if torch.any(shape == 0)`, onnx2torch 1.5.15): torch.export cannot trace a data-dependent branch
# (GuardOnDataDependentSymNode), TorchScript's tracer reads the constant. tests/training/export/test_dynamo.py
# shows the failure; when it stops failing, this entry can go.
#
# A GAN given as torch code (training.inversion.torch_code) is the user's code, with D^f taken by forward hooks
# that stop D early by raising: under torch.export D runs to its end instead, and in one of five all-dynamo test
# runs its export failed with "Unexpected key _export_root.module.discriminator.trunk"; TorchScript's tracer
# exported it in every run. Until that is understood, TorchScript for it too.
TORCHSCRIPT_ADAPTERS = ("OnnxAdapter", "TorchCodeAdapter")
PARITY_TOLERANCE = 1e-4  # max |ONNX Runtime − torch| the DFI issue sets for every shipped graph
DIRECTION_DATASETS = ("fashion-mnist", "emoji")  # the data sets whose named edit directions training/editing knows

LICENSES = {
    "fashion-mnist": "MIT (Zalando Research); Debian package dataset-fashion-mnist",
    "emoji": "emoji-datasource-twitter (CC-BY 4.0) + emoji-datasource-google (Apache 2.0) 16.0.0, from npm",
}


def refuse_classifier_features(what: str | Path) -> None:
    """The error for a bundle of an inverter on classifier features (sec. 4.6's DFI – VGG16 analogue)."""
    raise ValueError(f"{what} inverts through a classifier's features (features.network 'classifier', IJCV 4.6), "
                     "which a bundle cannot ship: its discriminator_features.onnx is by definition D^f of the GAN's "
                     "own discriminator (dfi_core/bundle.py) and its manifest has no field saying it holds a "
                     "classifier instead; score such an inverter with `python -m training evaluate "
                     "inverters`")  # fmt: skip


def _command(run: RunDir) -> str | None:
    return run.read_command() if run.command_path.is_file() else None


def _round(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else _round(v) if isinstance(v, dict) else v)
            for k, v in values.items()}  # fmt: skip


@torch.no_grad()
def measure(
    inverter: nn.Module,
    adapter: GANAdapter,
    n: int = 1000,
    refine_steps: int = 50,
    classifier: nn.Module | None = None,
    classifier_checkpoint: Path | None = None,
) -> dict[str, Any]:
    """The manifest's `metrics` (all but the ONNX parity): DFI and DFI^opt on the first n test images of the
    adapter's data set, through the adapter's G; class-consistency and FD only with a classifier."""
    test = load_adapter_split(adapter, "test")
    scores = score_inversion(inverter, adapter.generator, classifier, test, n=n, refine_steps=refine_steps)
    scores.pop("reconstructions")
    scores = flat_inversion_scores(scores)  # the manifest's schema: psnr, psnr_std, ssim, ssim_std, ...
    judged = "no classifier was given: class_consistency and fd are not measured; "
    if classifier is not None:
        judged = "class_consistency and fd use the data set's classifier (penultimate features); "
    return {
        "test_images": scores["n"],  # min(n, size of the test split): emoji has 688
        "split": "test (never seen in training)",
        "dfi": _round({k: v for k, v in scores.items() if k not in ("refined", "n")}),
        "dfi_opt": _round(scores.get("refined", {})),
        "classifier": str(classifier_checkpoint) if classifier_checkpoint is not None else None,
        "notes": "PSNR/SSIM on [0,1] images, data_range 1 (dfi_core.metrics; SSIM torchmetrics); " + judged
        + f"dfi_opt = {refine_steps} Adam steps of eq. 2 from the DFI latent",
    }  # fmt: skip


def bundle_from_adapter(
    inverter: nn.Module,
    adapter: GANAdapter,
    name: str,
    out: Path = Path("models"),
    *,
    metrics: dict[str, Any],
    training: dict[str, Any],
    gan_config: dict[str, Any] | None = None,
    inverter_checkpoint: Path | None = None,
    export_ready: nn.Module | None = None,
    classifier_checkpoint: Path | None = None,
    directions: bool = False,
    overwrite: bool = False,
    exporter: Exporter | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Export, parity-check and complete the bundle of a measured inverter of any GAN adapter.

    inverter: image → ẑ with `.features` (D^f) — an `Inverter`; export_ready: the same with parametrisations baked
    into plain weights (default: a folded copy of `inverter`, what `load_export_ready` gives from its checkpoint).
    training: {commands, seeds, checkpoints}; gan_config: default `adapter_record(adapter)`. inverter_checkpoint is
    copied in as inverter.safetensors (CN stored once, parity re-checkable from the bundle); directions: add the
    data set's named edit directions (zoo bundles of DIRECTION_DATASETS). exporter: None → `exporter_for(adapter)`.
    Returns (folder, manifest metrics)."""
    if isinstance(getattr(inverter, "features", None), ClassifierFeatures):
        refuse_classifier_features(inverter_checkpoint or "this inverter")
    if export_ready is None:  # spectral norm W / σ(W) folded in eval mode, as load_export_ready bakes it
        export_ready = _fold_parametrizations(inverter)
    if adapter.data is None:
        raise ValueError("this GAN adapter names no data set: a bundle records the data set its GAN was trained on "
                         "(pass --data when training the inverter)")  # fmt: skip
    name_of_data = adapter.data.name
    dataset = {"name": name_of_data, "split": "train", "license": LICENSES.get(name_of_data, "")}
    G = adapter.generator
    bundle_dir = export_bundle(
        out, name, G, export_ready.features, export_ready, dataset=dataset, training=training, metrics=metrics,
        gan_config=gan_config if gan_config is not None else adapter_record(adapter),
        latent=adapter.latent, image=adapter.image, overwrite=overwrite, exporter=exporter or exporter_for(adapter),
    )  # fmt: skip
    parity = check_parity(bundle_dir, G, export_ready.features, export_ready, latent=adapter.latent)
    if max(parity.values()) > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX parity failed for {bundle_dir}: {parity} (tolerance {PARITY_TOLERANCE})")
    with edit_bundle(bundle_dir) as edit:
        if inverter_checkpoint is not None:
            # The inverter's torch weights travel with the bundle so that CI can re-check ONNX parity on shipped
            # bundles without the run folders (tests/models/test_shipped_bundles.py).
            edit.add_file(inverter_checkpoint, INVERTER_FILE)
            edit.record_checkpoint(INVERTER_FILE)
        edit.set_metric("onnx_parity_max_abs_error", {k: float(f"{v:.3g}") for k, v in parity.items()})
    share_bundle_weights(bundle_dir)  # the CN (and any un-normalised D^f) weights once, in inverter.safetensors
    # The optional parts: the data set's judge and the named editing directions.
    from training.export.extras import add_classifier, add_directions

    if classifier_checkpoint is not None:
        add_classifier(bundle_dir, classifier_checkpoint, exporter=exporter)
    if directions:
        add_directions(bundle_dir)
    load_bundle(bundle_dir)
    return bundle_dir, edit.written.manifest.metrics


def exporter_for(adapter: GANAdapter) -> Exporter:
    """The ONNX exporter for an adapter's graphs: TorchScript for those dynamo cannot capture (TORCHSCRIPT_ADAPTERS),
    else the default (`training.export.onnx.default_exporter`, dynamo unless $DFI_ONNX_EXPORTER says otherwise)."""
    return "torchscript" if type(adapter).__name__ in TORCHSCRIPT_ADAPTERS else default_exporter()


def _inverter_config(path: Path) -> InverterConfig:
    return config_from_dict(read_metadata(path)["config"], expected=InverterConfig)


def build_bundle(
    gan_checkpoint: Path | None,
    inverter_checkpoint: Path,
    classifier_checkpoint: Path | None,
    name: str,
    out: Path = Path("models"),
    n: int = 1000,
    refine_steps: int = 50,
    extra_commands: list[str] | None = None,
    overwrite: bool = False,
    exporter: Exporter | None = None,
) -> tuple[Path, dict[str, Any]]:
    """The bundle of any inverter checkpoint. gan_checkpoint: None → the GAN the inverter names (a zoo checkpoint or a
    user's source); given → a zoo checkpoint, checked to be the inverter's. classifier_checkpoint: None → no
    class-consistency / FD in the metrics and no classifier graph."""
    torch.manual_seed(0)
    config = _inverter_config(inverter_checkpoint)
    if config.features.uses_classifier:
        refuse_classifier_features(inverter_checkpoint)
    if config.source is None:  # the zoo: as before the adapter, G and D from the (checked) GAN checkpoint
        gan_checkpoint = Path(gan_checkpoint or config.gan_checkpoint)
        inverter, G, D, config = load_inverter(inverter_checkpoint, "cpu", gan_checkpoint)
        gan = read_gan_config(gan_checkpoint)
        adapter: GANAdapter = ZooAdapter.build(gan, config.features, G, D)
    else:
        if gan_checkpoint is not None:
            raise ValueError(f"--gan names a zoo GAN checkpoint, but {inverter_checkpoint} inverts a GAN of your own "
                             f"({config.source.kind}: {config.source.generator}); leave --gan out: the inverter "
                             "checkpoint knows its GAN")  # fmt: skip
        inverter, adapter, config = load_inverter_adapter(inverter_checkpoint, "cpu")
    classifier = load_classifier(classifier_checkpoint)[0] if classifier_checkpoint is not None else None
    metrics = measure(inverter, adapter, n, refine_steps, classifier, classifier_checkpoint)
    runs = [RunDir(inverter_checkpoint.parent)]
    if classifier_checkpoint is not None:
        runs.append(RunDir(classifier_checkpoint.parent))
    if isinstance(adapter, ZooAdapter):
        assert gan_checkpoint is not None and adapter.gan is not None
        gan_run = RunDir.holding(gan_checkpoint)  # a checkpoint outside a run folder records no command
        runs[:0] = [gan_run] if gan_run is not None else []
        training = {"seeds": {"gan": adapter.gan.seed, "inverter": config.seed},
                    "checkpoints": [gan_checkpoint.name, inverter_checkpoint.name]}  # fmt: skip
        gan_config = read_metadata(gan_checkpoint)["config"]
        directions = adapter.gan.data.name in DIRECTION_DATASETS
        export_ready = load_export_ready(inverter_checkpoint)  # as before the adapter (the bundle is unchanged)
    else:  # a user's GAN: no GAN run of ours; the adapter's record (contracts, source) stands for its config
        # checkpoints: the inverter's, which bundle_from_adapter records as the bundle's inverter.safetensors
        training = {"seeds": {"inverter": config.seed}, "checkpoints": []}
        gan_config = adapter_record(adapter)
        # No directions by default: they need labelled images of the user's domain, and SeFa a first Linear on z
        # in generator.onnx (a conv-first G has none). `export folder-directions` (any labelled folder) or
        # `export directions` (a known data set) adds them.
        directions = False
        export_ready = None  # a folded copy of the loaded inverter: the user's code is not opened a second time
    commands = [c for c in map(_command, runs) if c]
    training["commands"] = commands + (extra_commands or [])
    return bundle_from_adapter(
        inverter, adapter, name, out, metrics=metrics, training=training, gan_config=gan_config,
        inverter_checkpoint=inverter_checkpoint, export_ready=export_ready, classifier_checkpoint=classifier_checkpoint,
        directions=directions, overwrite=overwrite, exporter=exporter,
    )  # fmt: skip


def bundle_parity(bundle_dir: str | Path, n: int = 64, batch_sizes: tuple[int, ...] = (1, 64)) -> dict[str, float]:
    """ONNX Runtime vs torch for a bundle, with torch modules rebuilt from the bundle's own files: the inverter from
    inverter.safetensors and G from generator.safetensors — or, for a user's GAN (no `refinement` block), from the
    source its inverter's config names (the user's code or graphs must be where they were at training)."""
    from dfi_core.refinement import load_refinement_generator

    bundle = load_bundle(bundle_dir)
    inverter_path = bundle.path(INVERTER_FILE)
    inverter = load_export_ready(inverter_path)
    if bundle.manifest.refinement is not None:
        G = load_refinement_generator(bundle.path(bundle.manifest.refinement.file))
        latent = None
    else:
        adapter = open_adapter(_inverter_config(inverter_path))
        G, latent = adapter.generator, adapter.latent
    return check_parity(bundle.folder, G, inverter.features, inverter, n=n, batch_sizes=batch_sizes, latent=latent)
