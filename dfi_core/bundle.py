"""The model bundle: one folder under `models/<name>/` that the inference service loads without torch.

Layout (every file except manifest.json is listed with its sha256 in `manifest.files`):

    models/<name>/
        manifest.json                  this schema (`Manifest`), sorted keys, indent 2
        invert.onnx                    image [batch, C, H, W] → z [batch, |z|]   (D^f and the connection network)
        generator.onnx                 z [batch, |z|] → image [batch, C, H, W]
        discriminator_features.onnx    image [batch, C, H, W] → features [batch, F]   (D^f)
        generator.safetensors          (optional, `refinement` block) G's state_dict + its config JSON: the zoo's
                                       architecture; every bundle can refine from generator.onnx (onnx2torch)
        classifier.onnx                (optional) image [batch, C, H, W] → logits [batch, classes]
        directions/<name>.npy          (optional) named latent directions [|z|] float32 for editing

Conventions: images are float32 NCHW in [-1, +1] (`dfi_core.preprocessing`); z is float32 drawn from N(0, I).

Each weight is stored once: a graph may read some initializers as ONNX external data from a .safetensors file of
the same bundle (`manifest.exporter.shared_weights`, e.g. invert.onnx → inverter.safetensors; written by
`training/export/shared_weights.py`). Open graphs by path (ONNX Runtime resolves the file next to the graph); the
checksums cover both files, so `load_bundle` refuses a changed weights file before any graph reads it.

manifest.json is written by one function, `write_manifest` (hash every file, validate, write atomically): a new
bundle calls it once (`training/export/onnx.py`), and every later change goes through `edit_bundle`, a context
manager with typed operations (record a command, set a graph, the directions, ...) that writes the manifest once
when its block ends cleanly and not at all if it raises.

`load_bundle` refuses — with a `BundleError` naming the bundle, the file and the problem — a missing manifest,
an unknown format version, invalid JSON or schema, a listed file that is missing, a sha256 mismatch and a file
the manifest does not list. Only numpy/pydantic/stdlib here (onnxruntime lazily): the service has no torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from dfi_core.onnx_graph import OnnxGraph

FORMAT_VERSION = "dfi-bundle/1"
MANIFEST_NAME = "manifest.json"
BATCH_DIM = "batch"  # the name of the dynamic batch axis in every graph

# The fixed graph contract: graph → (file, input name, output name). The service relies on these names.
GRAPH_CONTRACT: dict[str, tuple[str, str, str]] = {
    "invert": ("invert.onnx", "image", "z"),
    "generator": ("generator.onnx", "z", "image"),
    "discriminator_features": ("discriminator_features.onnx", "image", "features"),
}
# Optional graphs a bundle may add. `classifier` is the data set's own judge (class-consistency, attribute
# probabilities of edits), shipped so that the service's metric jobs and edit checks need no torch.
OPTIONAL_GRAPHS: dict[str, tuple[str, str, str]] = {
    "classifier": ("classifier.onnx", "image", "logits"),
}
REFINEMENT_FILE = "generator.safetensors"
REFINEMENT_FORMAT = "dfi-generator/1"  # the `format` key in the safetensors metadata

# How every image reaching a model was converted (dfi_core.preprocessing.load_image + to_model_range).
PREPROCESSING = (
    "Pillow: EXIF transpose, alpha composited on white, to L/RGB, centre-crop square, Lanczos resize, /127.5 - 1"
)

DIRECTION_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_SHA256_PATTERN = r"^[0-9a-f]{64}$"
_Model = TypeVar("_Model", bound=BaseModel)


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the bundle, the file and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_relative(path: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path or path == MANIFEST_NAME:
        raise ValueError(f"{path!r} must be a relative POSIX path inside the bundle (no '..', not the manifest)")
    return path


RelativePath = Annotated[str, AfterValidator(_check_relative)]


class DatasetInfo(_Strict):
    name: str
    split: str = Field(description="the split the models were trained on, e.g. 'train'")
    license: str = Field(description="licence and source of the data, e.g. 'MIT, github.com/zalandoresearch/...'")
    class_names: list[str] = Field(default=[], description="the classifier graph's classes, in logit order")


class ImageSpec(_Strict):
    channels: Literal[1, 3]
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    layout: Literal["NCHW"] = "NCHW"
    dtype: Literal["float32"] = "float32"
    value_range: tuple[float, float] = (-1.0, 1.0)
    preprocessing: str = PREPROCESSING

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


class LatentPrior(_Strict):
    """p(z) normal N(mean, std²·I): the zoo's, and most GANs'."""

    distribution: Literal["normal"] = "normal"
    mean: float = 0.0
    std: float = Field(default=1.0, gt=0)


class UniformLatentPrior(_Strict):
    """p(z) uniform U(low, high)^|z|: some GANs users bring."""

    distribution: Literal["uniform"]
    low: float = -1.0
    high: float = 1.0

    @model_validator(mode="after")
    def _low_below_high(self) -> UniformLatentPrior:
        if not self.high > self.low:
            raise ValueError(f"a uniform latent prior needs low < high, got [{self.low}, {self.high}]")
        return self


class LatentSpec(_Strict):
    size: int = Field(gt=0)
    prior: LatentPrior | UniformLatentPrior = Field(default_factory=LatentPrior, discriminator="distribution")


class TensorSpec(_Strict):
    name: str
    shape: list[int | str] = Field(description=f"dims; '{BATCH_DIM}' names the dynamic batch axis")


class GraphEntry(_Strict):
    file: RelativePath
    input: TensorSpec
    output: TensorSpec
    opset: int = Field(gt=0)


class PatchBox(_Strict):
    """Where the SCGAN's centre patch sits in the full image (pixels)."""

    top: int = Field(ge=0)
    left: int = Field(ge=0)
    height: int = Field(gt=0)
    width: int = Field(gt=0)


class OutpaintEntry(_Strict):
    """SCGAN (IJCV sec. 3.3): patch [batch, C, ph, pw] and z_edge [batch, E] → the full image [batch, C, H, W].

    Inside the graph: ẑ_center = CN(D_center^f(patch)), image = G_full(concat(ẑ_center, z_edge)). z_edge is an input
    so that a seed reproduces a sample; the service draws it from N(0, I)."""

    file: RelativePath
    inputs: list[TensorSpec] = Field(min_length=2, max_length=2, description="'patch' then 'z_edge'")
    output: TensorSpec
    opset: int = Field(gt=0)
    patch: PatchBox
    z_center_size: int = Field(gt=0)
    z_edge_size: int = Field(gt=0)


class Graphs(_Strict):
    invert: GraphEntry
    generator: GraphEntry
    discriminator_features: GraphEntry
    outpaint: OutpaintEntry | None = None
    classifier: GraphEntry | None = None

    def entries(self) -> dict[str, GraphEntry | OutpaintEntry]:
        return {name: entry for name, entry in self if entry is not None}


class Refinement(_Strict):
    """G as torch weights for the zoo's architecture (`dfi_core.generator`). Optional: a bundle made from a user's
    own GAN has none, and refinement (eq. 2) runs from generator.onnx via onnx2torch (`dfi_core.refinement`)."""

    file: RelativePath = REFINEMENT_FILE
    format: Literal["safetensors"] = "safetensors"
    generator_config: dict[str, Any] = Field(description="dfi_core.generator.GeneratorConfig as a dict")


class TrainingInfo(_Strict):
    commands: list[str] = []
    seeds: dict[str, int] = {}
    checkpoints: list[str] = []
    gan_config: dict[str, Any] = Field(default={}, description="the GAN run config (training.gan.config.to_dict)")


class ExporterInfo(_Strict):
    torch: str
    onnx: str
    exporter: str
    opset: int = Field(gt=0)
    onnxruntime: str | None = None
    shared_weights: dict[RelativePath, RelativePath] = Field(
        default={},
        description="graph file → safetensors file of this bundle that holds some of its weights as ONNX external "
        "data (each weight stored once; training/export/shared_weights.py)",
    )


class Direction(_Strict):
    """A named latent direction (IJCV eq. 9): z + strength · vector; `counts` are the images averaged."""

    file: RelativePath = Field(description="a .npy file holding float32 [|z|]")
    description: str
    method: str = Field(default="mean-difference", description="how it was computed (e.g. eq. 9 grouped means)")
    counts: dict[str, int] = {}


class Manifest(_Strict):
    format_version: Literal["dfi-bundle/1"] = FORMAT_VERSION
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    created: datetime
    dataset: DatasetInfo
    image: ImageSpec
    latent: LatentSpec
    graphs: Graphs
    refinement: Refinement | None = Field(default=None, description="generator.safetensors; None: refine from ONNX")
    files: dict[str, str] = Field(default={}, description="relative path → sha256 for every file but the manifest")
    training: TrainingInfo = Field(default_factory=TrainingInfo)
    metrics: dict[str, Any] = {}
    exporter: ExporterInfo
    directions: dict[str, Direction] = {}

    @field_validator("directions")
    @classmethod
    def _direction_names(cls, directions: dict[str, Direction]) -> dict[str, Direction]:
        for name in directions:
            if not re.match(DIRECTION_NAME_PATTERN, name):
                raise ValueError(f"direction name {name!r} must match {DIRECTION_NAME_PATTERN}")
        return directions

    @field_validator("files")
    @classmethod
    def _files(cls, files: dict[str, str]) -> dict[str, str]:
        for path, digest in files.items():
            _check_relative(path)
            if not re.match(_SHA256_PATTERN, digest):
                raise ValueError(f"files[{path!r}]: {digest!r} is not a lowercase hex sha256")
        return files

    @model_validator(mode="after")
    def _contract(self) -> Manifest:
        """The three core graphs carry the fixed names and shapes that match `image` and `latent`."""
        image = [BATCH_DIM, *self.image.shape]
        z = [BATCH_DIM, self.latent.size]
        expected = {"invert": (image, z), "generator": (z, image), "discriminator_features": (image, None)}
        problems = []
        for graph, (in_shape, out_shape) in expected.items():
            entry: GraphEntry = getattr(self.graphs, graph)
            _, in_name, out_name = GRAPH_CONTRACT[graph]
            if (entry.input.name, entry.output.name) != (in_name, out_name):
                problems.append(f"graph {graph} must map '{in_name}' → '{out_name}'")
            if entry.input.shape != in_shape:
                problems.append(f"graph {graph} input shape {entry.input.shape} ≠ {in_shape}")
            if out_shape is not None and entry.output.shape != out_shape:
                problems.append(f"graph {graph} output shape {entry.output.shape} ≠ {out_shape}")
        if self.graphs.outpaint is not None:
            entry = self.graphs.outpaint
            box = entry.patch
            want = ([BATCH_DIM, self.image.channels, box.height, box.width], [BATCH_DIM, entry.z_edge_size])
            got = tuple(spec.shape for spec in entry.inputs)
            names = tuple(spec.name for spec in entry.inputs)
            if (
                names != ("patch", "z_edge")
                or got != want
                or entry.output.shape != image
                or entry.output.name != "image"
            ):
                problems.append(f"graph outpaint must map 'patch' {want[0]}, 'z_edge' {want[1]} → 'image' {image}")
            if box.top + box.height > self.image.height or box.left + box.width > self.image.width:
                problems.append(
                    f"outpaint patch {box} does not fit in the {self.image.height}×{self.image.width} image"
                )
        if self.graphs.classifier is not None:
            entry = self.graphs.classifier
            _, in_name, out_name = OPTIONAL_GRAPHS["classifier"]
            if (entry.input.name, entry.output.name) != (in_name, out_name) or entry.input.shape != image:
                problems.append(f"graph classifier must map '{in_name}' {image} → '{out_name}'")
            classes = [BATCH_DIM, len(self.dataset.class_names)]
            if entry.output.shape != classes:
                problems.append(f"graph classifier output {entry.output.shape} ≠ {classes} (dataset.class_names)")
        graph_files = {entry.file for entry in self.graphs.entries().values()}
        for graph_file, weights_file in self.exporter.shared_weights.items():
            if graph_file not in graph_files or not weights_file.endswith(".safetensors"):
                problems.append(f"exporter.shared_weights: {graph_file} → {weights_file} must map a graph file of "
                                "this bundle to a .safetensors file")  # fmt: skip
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def referenced_files(self) -> list[str]:
        """Files the manifest points to (graphs, refinement weights, directions)."""
        refs = [entry.file for entry in self.graphs.entries().values()]
        refs += [self.refinement.file] if self.refinement is not None else []
        refs += list(dict.fromkeys(self.exporter.shared_weights.values()))
        return refs + [d.file for d in self.directions.values()]

    def dumps(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"


@dataclass(frozen=True)
class Bundle:
    folder: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    def path(self, relative: str) -> Path:
        if relative not in self.manifest.files:
            raise BundleError(f"bundle {self.name!r}: {relative} is not a file of this bundle")
        return self.folder / relative

    def graph_path(self, graph: str) -> Path:
        entries = self.manifest.graphs.entries()
        if graph not in entries:
            raise BundleError(f"bundle {self.name!r} has no graph {graph!r}; it has {sorted(entries)}")
        return self.path(entries[graph].file)

    def open_graph(self, graph: str, **kwargs: Any) -> OnnxGraph:
        """An ONNX Runtime session for one graph (kwargs go to `OnnxGraph`), checked against the manifest."""
        from dfi_core.onnx_graph import OnnxGraph

        path = self.graph_path(graph)
        entry = self.manifest.graphs.entries()[graph]
        session = OnnxGraph(path, name=f"{self.name}/{graph}", **kwargs)
        specs = entry.inputs if isinstance(entry, OutpaintEntry) else [entry.input]
        declared = ([(i.name, i.shape) for i in specs], entry.output.name, entry.output.shape)
        actual = ([(n, list(s)) for n, s in zip(session.input_names, session.input_shapes, strict=True)],
                  session.output_name, list(session.output_shape))  # fmt: skip
        if declared != actual:
            raise BundleError(f"bundle {self.name!r}: {entry.file}: the graph has {actual}, the manifest {declared}")
        return session


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _bundle_files(folder: Path) -> list[str]:
    """Every file under `folder` (recursively) except the manifest, as sorted relative POSIX paths."""
    files = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            relative = (Path(root) / name).relative_to(folder).as_posix()
            if relative != MANIFEST_NAME:
                files.append(relative)
    return sorted(files)


def _brief(error: ValidationError, limit: int = 5) -> str:
    parts = []
    for item in error.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "manifest"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def write_manifest(folder: str | Path, manifest: Manifest | dict[str, Any]) -> Manifest:
    """Hash every file in `folder`, fill `files`, validate and write manifest.json (sorted keys, indent 2).

    `manifest` is everything but `files` (any `files` given is replaced). Returns the written Manifest.
    """
    folder = Path(folder)
    values = manifest.model_dump(mode="json") if isinstance(manifest, Manifest) else dict(manifest)
    values["files"] = {relative: sha256_file(folder / relative) for relative in _bundle_files(folder)}
    label = f"bundle {values.get('name', folder.name)!r} ({folder})"
    try:
        parsed = Manifest.model_validate(values)
    except ValidationError as error:
        raise BundleError(f"{label}: {MANIFEST_NAME}: invalid manifest: {_brief(error)}") from None
    missing = [ref for ref in parsed.referenced_files() if ref not in parsed.files]
    if missing:
        raise BundleError(f"{label}: the manifest refers to {missing}, which are not in the folder")
    tmp = folder / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(parsed.dumps(), encoding="utf-8")
    tmp.replace(folder / MANIFEST_NAME)
    return parsed


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read and check a bundle folder.

    Always: the manifest exists, is JSON, has a known format version and a valid schema, every file it refers
    to is listed and every listed file exists. With `verify` (default) also: every file's sha256 matches and
    the folder holds no file the manifest does not list.
    """
    folder = Path(path)
    label = f"bundle {folder.name!r} ({folder})"
    if not folder.is_dir():
        raise BundleError(f"{label}: not a folder")
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{label}: {MANIFEST_NAME} is missing")
    try:
        values = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{label}: {MANIFEST_NAME} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise BundleError(f"{label}: {MANIFEST_NAME} must hold a JSON object, got {type(values).__name__}")
    version = values.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{label}: {MANIFEST_NAME}: unknown format_version {version!r} (expected {FORMAT_VERSION!r})")
    try:
        manifest = Manifest.model_validate(values)
    except ValidationError as error:
        raise BundleError(f"{label}: {MANIFEST_NAME}: invalid manifest: {_brief(error)}") from None
    label = f"bundle {manifest.name!r} ({folder})"
    for ref in manifest.referenced_files():
        if ref not in manifest.files:
            raise BundleError(f"{label}: {ref} is referenced by the manifest but not listed in its files")
    for relative in manifest.files:
        if not (folder / relative).is_file():
            raise BundleError(f"{label}: {relative} is listed in the manifest but missing")
    if verify:
        for relative, expected in manifest.files.items():
            actual = sha256_file(folder / relative)
            if actual != expected:
                raise BundleError(f"{label}: {relative}: sha256 mismatch: expected {expected}, got {actual}")
        unlisted = [relative for relative in _bundle_files(folder) if relative not in manifest.files]
        if unlisted:
            raise BundleError(f"{label}: {', '.join(unlisted)}: file(s) not listed in the manifest")
    return Bundle(folder=folder, manifest=manifest)


class BundleEditor:
    """Typed changes to one bundle's manifest, collected by `edit_bundle` and written once when its block ends.

    Files the edit adds (graphs, direction arrays, `add_file`) are written into `folder` by the caller while the
    block runs; the manifest lists every file of the folder with its sha256 when it is written, so a file needs no
    separate registration. Read the bundle as it was through `loaded`; after a clean exit `written` is the bundle
    as written.
    """

    def __init__(self, bundle: Bundle) -> None:
        self.loaded = bundle
        self.folder = bundle.folder
        self._manifest = bundle.manifest.model_copy(deep=True)
        self._written: Bundle | None = None

    @property
    def written(self) -> Bundle:
        if self._written is None:
            raise RuntimeError(f"bundle {self.loaded.name!r}: the edit has not been written (its block is open)")
        return self._written

    def _open(self) -> Manifest:
        if self._written is not None:
            raise RuntimeError(f"bundle {self.loaded.name!r}: the edit was already written; open a new edit_bundle")
        return self._manifest

    def _parse(self, model: type[_Model], values: _Model | dict[str, Any], where: str) -> _Model:
        if isinstance(values, model):
            return values.model_copy(deep=True)
        try:
            return model.model_validate(values)
        except ValidationError as error:
            raise BundleError(f"bundle {self.loaded.name!r} ({self.folder}): {where}: {_brief(error)}") from None

    def record_command(self, command: str | None, replaces: str | None = None) -> None:
        """Append `command` to training.commands after dropping an identical earlier one and every earlier one that
        starts with `replaces` (a re-run of the same export step supersedes the old record). None or "": no-op."""
        manifest = self._open()
        if command:
            commands = manifest.training.commands
            kept = [c for c in commands if c != command and not (replaces and c.startswith(replaces))]
            manifest.training.commands = kept + [command]

    def record_command_once(self, command: str | None) -> None:
        """Append `command` unless training.commands holds it already (then it keeps its place). None or "": no-op."""
        manifest = self._open()
        if command and command not in manifest.training.commands:
            manifest.training.commands = [*manifest.training.commands, command]

    def record_checkpoint(self, relative: str) -> None:
        """Append a file of the bundle to training.checkpoints (the torch weights it was built from)."""
        manifest = self._open()
        manifest.training.checkpoints = [*manifest.training.checkpoints, relative]

    def set_graph(self, name: str, entry: GraphEntry | OutpaintEntry | dict[str, Any]) -> None:
        """Add or replace graph `name` (the contract with `image`, `latent` and the classes is checked on write)."""
        manifest = self._open()
        if name not in Graphs.model_fields:
            raise BundleError(f"bundle {self.loaded.name!r}: no graph {name!r}; graphs are {list(Graphs.model_fields)}")
        model = OutpaintEntry if name == "outpaint" else GraphEntry
        setattr(manifest.graphs, name, self._parse(model, entry, f"graphs.{name}"))

    def set_class_names(self, names: list[str]) -> None:
        """dataset.class_names: the classifier graph's classes, in logit order."""
        self._open().dataset.class_names = list(names)

    def set_directions(self, directions: dict[str, Direction | dict[str, Any]]) -> None:
        """Replace the whole set of named directions (their .npy files are the caller's to write)."""
        manifest = self._open()
        manifest.directions = {
            name: self._parse(Direction, value, f"directions.{name}") for name, value in directions.items()
        }

    def set_shared_weights(self, graph_file: str, weights_file: str) -> None:
        """Record that `graph_file` reads some initializers from `weights_file` (exporter.shared_weights)."""
        manifest = self._open()
        manifest.exporter.shared_weights = {**manifest.exporter.shared_weights, graph_file: weights_file}

    def set_metric(self, name: str, value: Any) -> None:
        """metrics[name] = value (JSON-serialisable)."""
        manifest = self._open()
        manifest.metrics = {**manifest.metrics, name: value}

    def add_file(self, source: str | Path, relative: str) -> Path:
        """Copy `source` into the bundle as `relative`, readable by all (the service may run as another user)."""
        self._open()
        target = self.folder / _check_relative(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        target.chmod(0o644)
        return target

    def _write(self) -> Bundle:
        self._written = Bundle(self.folder, write_manifest(self.folder, self._open()))
        return self._written


@contextlib.contextmanager
def edit_bundle(source: Bundle | str | Path) -> Iterator[BundleEditor]:
    """Change an existing bundle's manifest through typed operations; the one way exporters rewrite manifest.json.

    A path is loaded (and verified) first; a `Bundle` is edited as it was loaded. On a clean exit every file of the
    folder is re-hashed (sha256), the manifest is validated by `Manifest` and written once, atomically
    (`write_manifest`: a temp file renamed over manifest.json). If the block raises, manifest.json is not touched.

        with edit_bundle(folder) as edit:
            edit.set_graph("classifier", entry)
            edit.record_command(command)
        bundle = edit.written
    """
    editor = BundleEditor(source if isinstance(source, Bundle) else load_bundle(source))
    yield editor
    editor._write()
