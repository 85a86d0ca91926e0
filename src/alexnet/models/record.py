"""A trained network's record: what it is, what it tells apart, how a photo becomes its
input, and where it came from. One typed value, frozen, saved with the weights.

    ModelRecord
      network        Network: the variant's name and its full config (rebuilds the network)
      classes        Classes: ids (a WordNet id, a folder name) and names, in output order
      preprocessing  Preprocessing (alexnet.data.preprocess): the photo -> input function
      provenance     Provenance: recipe and store digests, package version, git commit,
                     epoch, validation metrics, the weights it started from (--init-from)
      schema         the record's layout version (SCHEMA); older layouts are migrated

torchvision's `Weights` carry `.transforms()` and `.meta`, timm's models a `pretrained_cfg`;
here `alexnet.load(path)` gives the network and this record, and `record.transform` is the
exact preprocessing of `alexnet predict`. Every part of the package that writes a trained
network (train, import, export) or reads one (eval, predict, features, explain, neighbors,
serve, bench) goes through this type; on disk it is plain values and tensors
(`to_state`/`from_state`), so a checkpoint still loads with `torch.load(weights_only=True)`,
and as JSON plus the mean tensor in files whose metadata are strings (`to_json`/`from_json`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace

import torch

from alexnet.core.errors import UserError
from alexnet.data.preprocess import Preprocessing

#: The record's layout. 1 was the untyped `model` and `data` dicts (see `from_v1`).
SCHEMA = 2


@dataclass(frozen=True)
class Network:
    """A registered variant and every field of its config (num_classes, in_chans, ...)."""

    name: str
    config: Mapping

    def __post_init__(self) -> None:
        # as JSON holds it (tuples as lists), so that a record equals itself read back
        object.__setattr__(self, "config", plain(dict(self.config)))

    def build(self):
        """This network with fresh weights (alexnet.models.registry.create_model)."""
        from alexnet.models.registry import create_model

        config = dict(self.config)
        num_classes, in_chans = config.pop("num_classes"), config.pop("in_chans")
        return create_model(self.name, num_classes=num_classes, in_chans=in_chans, **config)

    @classmethod
    def of(cls, model) -> Network:
        return cls(model.name, asdict(model.config))


@dataclass(frozen=True)
class Classes:
    """The classes in the order of the network's outputs."""

    ids: tuple[str, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if len(self.ids) != len(self.names):
            raise UserError(f"{len(self.ids)} class ids but {len(self.names)} names")

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Source:
    """A file of weights a network came from: what a run started from (`--init-from`), or
    another codebase's file it was imported from (`alexnet import`)."""

    path: str  # as given
    sha256: str | None  # of the file's bytes
    network: str  # its variant here, or the codebase it was imported from ("torchvision")


@dataclass(frozen=True)
class Provenance:
    """Where a network came from, so that a copied `best.pt` still says it. Unknown: None."""

    package_version: str | None = None  # alexnet's version that wrote it
    git_commit: str | None = None  # `git describe --always --dirty` of the package's tree
    recipe_sha256: str | None = None  # content digest of the resolved recipe (core.digest)
    store: str | None = None  # the prepared store it was trained on
    store_sha256: str | None = None  # SHA-256 of that store's manifest.json
    epoch: int | None = None  # epochs completed
    metrics: Mapping[str, float] = field(default_factory=dict)  # validation, at `epoch`
    init_from: Source | None = None
    imported_from: Source | None = None


@dataclass(frozen=True)
class ModelRecord:
    network: Network
    classes: Classes
    preprocessing: Preprocessing
    provenance: Provenance = Provenance()
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        outputs = self.network.config.get("num_classes")
        if outputs is not None and outputs != len(self.classes):
            raise UserError(f"{self.network.name} has {outputs} outputs but the record names "
                             f"{len(self.classes)} classes")  # fmt: skip
        in_chans = self.network.config.get("in_chans")
        if in_chans is not None and in_chans != self.preprocessing.channels:
            raise UserError(f"{self.network.name} reads {in_chans} channels but the "
                             f"preprocessing makes {self.preprocessing.channels}")  # fmt: skip

    @property
    def transform(self) -> Preprocessing:
        """A photo -> the network's input, as `alexnet predict` makes it:
        `record.transform(image)` (C, crop, crop), `record.transform(image, views="ten-crop")`
        (10, C, crop, crop); image: a PIL image, encoded bytes or a path."""
        return self.preprocessing

    def replace(self, **changes) -> ModelRecord:
        return replace(self, **changes)

    def with_provenance(self, **changes) -> ModelRecord:
        return replace(self, provenance=replace(self.provenance, **changes))

    # -- on disk ---------------------------------------------------------------------------

    def to_json(self) -> tuple[dict, torch.Tensor | None]:
        """Plain JSON values, and the mean (a tensor, or None) kept apart from them."""
        pre = self.preprocessing
        return {
            "schema": self.schema,
            "network": {"name": self.network.name, "config": dict(self.network.config)},
            "classes": {"ids": list(self.classes.ids), "names": list(self.classes.names)},
            "preprocessing": {
                "channels": pre.channels,
                "image_size": pre.image_size,
                "view_size": pre.view_size,
                "crop_size": pre.crop_size,
                "mean_shape": None if pre.mean is None else list(pre.mean.shape),
                "mean_per_channel": _list(pre.mean_per_channel),
                "scale": _list(pre.scale),
                "filter": pre.filter,
                "draft": pre.draft,
            },
            "provenance": plain(asdict(self.provenance)),
        }, pre.mean

    @classmethod
    def from_json(cls, values: Mapping, mean: torch.Tensor | None) -> ModelRecord:
        """The record `to_json` wrote; ValueError naming what is missing or wrong."""
        try:
            if values["schema"] != SCHEMA:
                raise UserError(f"record schema {values['schema']}; this version reads {SCHEMA}")
            pre = dict(values["preprocessing"])
            shape = pre.pop("mean_shape")
            pre.pop("mean_per_channel", None)  # derived from the mean
            if (mean is None) != (shape is None) or (
                mean is not None and list(mean.shape) != shape
            ):
                raise UserError(f"the mean tensor does not have the recorded shape {shape}")
            provenance = dict(values.get("provenance") or {})
            for key in ("init_from", "imported_from"):
                if provenance.get(key) is not None:
                    provenance[key] = Source(**provenance[key])
            known = {f.name for f in fields(Provenance)}
            return cls(
                network=Network(values["network"]["name"], dict(values["network"]["config"])),
                classes=Classes(values["classes"]["ids"], values["classes"]["names"]),
                preprocessing=Preprocessing(mean=mean, **pre),
                # a later release's extra facts are kept out, not refused
                provenance=Provenance(**{k: v for k, v in provenance.items() if k in known}),
            )
        except (KeyError, TypeError) as error:
            raise UserError(f"not a model record ({type(error).__name__}: {error})") from None

    def to_state(self) -> dict:
        """For torch.save: the JSON values with the mean as a tensor among them."""
        values, mean = self.to_json()
        values["preprocessing"]["mean"] = mean
        return values

    @classmethod
    def from_state(cls, state: Mapping) -> ModelRecord:
        values = {**state, "preprocessing": dict(state["preprocessing"])}
        mean = values["preprocessing"].pop("mean")
        return cls.from_json(values, mean)


def _list(values) -> list | None:
    return None if values is None else list(values)


def plain(value):
    """Tuples as lists, as JSON gives them back (so a record survives a round trip equal)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


# -- the layout before the typed record --------------------------------------------------


def from_v1(model: Mapping, data: Mapping, extra: Mapping | None = None) -> ModelRecord:
    """The record of a file written before the typed record: its `model` ({name, config})
    and untyped `data` dict. Photos are prepared as that release's predict did: the `scale`
    it held (whatever `normalize` said), bilinear resizing and draft decoding (it recorded
    neither), the mean image as saved. `extra`: the rest of the checkpoint, for provenance
    (alexnet_version, progress, config, imported)."""
    from alexnet.core.digest import content_digest

    extra = extra or {}
    scale = data.get("scale")
    config = extra.get("config")
    imported = extra.get("imported") or {}
    progress = extra.get("progress") or {}
    return ModelRecord(
        network=Network(model["name"], dict(model["config"])),
        classes=Classes(data["class_ids"], data["class_names"]),
        preprocessing=Preprocessing(
            channels=data["channels"],
            image_size=data["image_size"],
            view_size=data["view_size"],
            crop_size=data["crop_size"],
            mean=None if data.get("mean_image") is None else torch.as_tensor(data["mean_image"]),
            scale=None if scale is None else tuple(float(v) for v in torch.as_tensor(scale)),
        ),
        provenance=Provenance(
            package_version=extra.get("alexnet_version") or None,
            recipe_sha256=None if not config else content_digest(config),
            store=data.get("store"),
            epoch=progress.get("epoch"),
            imported_from=None
            if not imported.get("from")
            else Source(imported.get("file", ""), imported.get("sha256"), imported["from"]),
        ),
    )
