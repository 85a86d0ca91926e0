"""Training recipes: one YAML file per experiment (configs/), typed and checked.

A recipe has five sections. Every key has a default here with its unit; a file sets what
differs, and `--set section.key=value` overrides one key from the command line. The value
is read by the key's type (`alexnet.core.checks.read_value`): text and paths are kept as
given ("runs/x #1", "yes"; empty for None), numbers, booleans and lists read as YAML (0.01,
true, [25, 51, 79], null). A key that does not exist or a value of the wrong type is refused
with a message naming it. The resolved recipe is saved with each run.

    model:    name, then any field of its config (AlexNetConfig: dropout, lrn, towers, init,
              ...; CifarNetConfig for cifar4), and `reinit`: the layers that keep their
              fresh initialization when the weights come from elsewhere (run.init_from)
    data:     the prepared store and the views
    optim:    the update rule and its constants
    schedule: how the learning rate falls
    run:      epochs, budget, precision, device, checkpoints
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from alexnet.core.checks import ConfigError, check_choice, check_type, read_value
from alexnet.core.errors import UserError
from alexnet.data.dataset import NORMALIZE
from alexnet.data.render import RENDER
from alexnet.models.registry import DEFAULT_MODEL, VARIANTS, list_models

PRECISIONS = ("fp32", "bf16", "fp16", "fp64", "auto")
#: the update rules (alexnet.train.optim) and schedules (alexnet.train.schedule)
OPTIMIZERS = ("paper", "torch_sgd", "lars")
LR_SCALINGS = ("none", "linear")
SCHEDULES = ("plateau", "milestones", "constant")
#: keys of the model section that are not fields of the network's config
MODEL_KEYS = ("name", "reinit")
EVAL_VIEWS = ("center", "ten-crop")
PREPROCESSING = ("source", "store")


@dataclass
class DataConfig:
    store: str = ""  # a folder made by `alexnet data prepare`
    train_split: str = "train"
    val_split: str = "val"
    crop_size: int | None = None  # pixels; None: the model's (224, or 227 for caffenet)
    lighting: str = "released"  # PCA lighting: released | literal | fbresnet | none
    lighting_std: float = 0.1  # std of the paper's alpha_i
    flip: bool = True  # reflect training crops half the time (False: no reflections)
    # none: the paper's inputs, 0-255 values minus the mean image; std: also divide each
    # channel by its standard deviation (torchvision's convention; what init=kaiming assumes)
    normalize: str = "none"
    # Where the mean and scale of the inputs come from when run.init_from names a source:
    # source (its record's: fine-tuned weights see inputs on the scale they were trained on)
    # or store (this store's statistics and data.normalize, on purpose). Without a source,
    # always the store's.
    preprocessing: str = "source"
    workers: int = 1  # DataLoader processes per rank; 0 renders batches in the training process
    # where crops, reflections, upscaling, lighting and the mean are applied: cpu (the loader)
    # or device (the loader sends stored pixels; the GPU renders: alexnet.data.render)
    render: str = "cpu"
    train_images: int | None = None  # train on a fixed random subset of this many images
    val_images: int | None = None  # validate on a fixed random subset of this many images
    # train and validate on the images of the store's first N classes only: a class subset
    # sized to a budget (the network then has N outputs)
    classes: int | None = None
    # train and validate on these classes only, by id (a list, or a file of ids, one a line),
    # labelled in this order: a class subset chosen by name (the network then has as many
    # outputs); `alexnet data split-classes` writes such files
    class_ids: list[str] | str | None = None
    # Validation images held out of train_split: a number of images, or a share (0-1), drawn
    # from each class in proportion with holdout_seed (data.loader.holdout). They then pick
    # best.pt and drive the plateau rule, and val_split, never looked at in training, is
    # the test of record (`alexnet eval --split val`, or `alexnet train --test`). None: the
    # val_split validates and steers, so its numbers are not test numbers.
    holdout: int | float | None = None
    holdout_seed: int = 0  # apart from run.seed, so that runs of several seeds share one
    # Train on this many images of each class (of those left after the holdout), drawn with
    # per_class_seed: the few-images regimes of a transfer study (data.loader.per_class)
    per_class: int | None = None
    per_class_seed: int = 0


@dataclass
class OptimConfig:
    # paper: the velocity holds the lr (section 5) | torch_sgd | lars: You, Gitman and
    # Ginsburg (2017)'s layer-wise rate on the paper's update (alexnet.train.optim.LARS)
    name: str = "paper"
    lr: float = 0.01  # epsilon, per image-batch step
    momentum: float = 0.9
    weight_decay: float = 0.0005
    batch_size: int = 128  # images per step, all ranks together
    # each step's batch in this many micro-batches per rank, their gradients summed before
    # the one update (and reduced across ranks once): the update of the whole batch
    accumulate: int = 1
    # none | linear: the rate is lr x batch_size / 128 (Goyal et al. 2017; the paper's 0.01
    # is the rate of batch 128)
    lr_scaling: str = "none"
    trust: float = 0.001  # lars: the trust coefficient eta
    bias_lr_mult: float = 1.0  # the released code: 2
    bias_weight_decay: bool = True  # the released code: false
    # weight decay of single layers' weights in place of weight_decay, by layer name (the
    # released CIFAR-10 files' per-layer wc), e.g. {conv1: 0.0, conv2: 0.0}
    layer_weight_decay: dict[str, float] | None = None
    # layers that do not learn (fine-tuning), e.g. [conv1, conv2, conv3, conv4, conv5]
    freeze: list[str] | None = None
    # a multiplier of the rate for single layers (Caffe's lr_mult), e.g. {fc8: 10.0}
    layer_lr_mult: dict[str, float] | None = None


@dataclass
class ScheduleConfig:
    kind: str = "plateau"  # plateau (the paper) | milestones (the released code) | constant
    factor: float = 0.1  # the paper divides by 10
    patience: int = 1  # plateau: epochs without improvement before a drop
    max_drops: int = 3  # plateau: the paper reduced the rate three times
    threshold: float = 0.0  # plateau: an improvement must beat the best by more (error, 0-1)
    # plateau: end the run once the rate has been dropped max_drops times and the error has
    # not improved for `patience` epochs since ("reduced three times prior to termination");
    # run.epochs stays the upper bound
    early_stop: bool = False
    milestones: list[int] = field(default_factory=lambda: [25, 51, 79])  # epochs, 1-based
    # Goyal et al. (2017)'s gradual warmup: over these first epochs the rate rises linearly,
    # step by step, from optim.lr to the scaled rate (optim.lr_scaling: linear)
    warmup_epochs: float = 0.0


@dataclass
class RunConfig:
    epochs: int = 90
    budget_minutes: float | None = None  # stop training after this much time, then evaluate
    seed: int = 0  # initialization, shuffling, augmentation and dropout
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:1, ...
    # fp32 | bf16 (autocast, CPU or GPU) | fp16 (GPU, loss scaling) | fp64 (weights and
    # inputs in float64: for numerical checks, such as data parallelism against one process)
    # | auto: bf16 where the hardware has bf16 instructions, else fp32
    # (runtime.auto_precision); the run's saved recipe holds the precision auto chose
    precision: str = "fp32"
    channels_last: bool = False
    # torch.compile the training step's network (not validation's). Worth it on GPUs (bf16
    # training on an H100: docs/benchmarks.md); costs a minute or so of compiling first.
    compile: bool = False
    checkpoint_minutes: float = 10.0  # also write `last` this often within an epoch
    checkpoint_steps: int | None = None  # ... or every this many steps
    max_bad_steps: int = 5  # stop after this many non-finite losses in a row
    eval_views: str = "center"  # validation views each epoch: center | ten-crop
    log_every_steps: int = 50  # a progress line in the log (the bar updates every step)
    # the paper's model parallelism: tower A and tower B on these two devices
    tower_devices: list[str] | None = None
    # several processes (torchrun): ddp (every layer data parallel, DistributedDataParallel)
    # | hybrid (Krizhevsky 2014: conv1-conv5 data parallel, fc6-fc8 split over the ranks;
    # alexnet.train.hybrid)
    parallel: str = "ddp"
    # start from these weights (a checkpoint, run directory or exported .safetensors of the
    # same network), layer by layer; model.reinit lists the layers that do not take them
    init_from: str | None = None


SECTIONS = {
    "data": DataConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "run": RunConfig,
}


@dataclass
class TrainConfig:
    model: dict = field(default_factory=lambda: {"name": DEFAULT_MODEL})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def model_name(self) -> str:
        return self.model.get("name", DEFAULT_MODEL)

    @property
    def model_options(self) -> dict:
        """The network's config fields (what `create_model` takes besides the sizes)."""
        return {k: v for k, v in self.model.items() if k not in MODEL_KEYS}

    @property
    def reinit(self) -> list[str]:
        return list(self.model.get("reinit") or [])

    def to_dict(self) -> dict:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def from_dict(values: dict) -> TrainConfig:
    """Build and check a recipe; unknown sections or keys and wrong types raise ConfigError."""
    if not isinstance(values, dict):
        raise ConfigError("a recipe is a mapping of sections (model, data, optim, schedule, run)")
    known = ("model", *SECTIONS)
    for section in values:
        if section not in known:
            raise ConfigError(f"unknown section {section!r}; sections are: {', '.join(known)}")
    model = dict(values.get("model") or {})
    model.setdefault("name", DEFAULT_MODEL)
    _check_model(model)
    parts = {}
    for name, cls in SECTIONS.items():
        given = values.get(name) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"section {name} must be a mapping of keys, got {given!r}")
        names = [f.name for f in fields(cls)]
        for key in given:
            if key not in names:
                raise ConfigError(f"unknown key {name}.{key}; {name} has: {', '.join(names)}")
        given = {k: _exponent_float(v, f.type) for f in fields(cls) for k, v in given.items()
                 if k == f.name}  # fmt: skip
        for f in fields(cls):
            if f.name in given:
                _check_value(f"{name}.{f.name}", given[f.name], f.type)
        parts[name] = cls(**given)
    config = TrainConfig(model=model, **parts)
    _check_choices(config)
    return config


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _exponent_float(value, annotation: str):
    """YAML 1.1 (PyYAML) reads 1e-4 as a string, wanting 1.0e-4; a float field takes it."""
    if isinstance(value, str) and "float" in annotation and _EXPONENT_FLOAT.fullmatch(value):
        return float(value)
    return value


def _check_value(key: str, value, annotation: str) -> None:
    if annotation.startswith("dict["):
        if value is None and "None" in annotation:
            return
        item = annotation[annotation.index(",") + 1 : annotation.index("]")].strip()
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key} must be a mapping of names to {item}, got {value!r}")
        for name, v in value.items():
            _check_value(f"{key}.{name}", v, item)
        return
    if annotation.startswith("list["):
        if value is None and "None" in annotation:
            return
        if isinstance(value, str) and "| str" in annotation:  # a file that holds the list
            return
        item = annotation[5 : annotation.index("]")]
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list of {item}, got {value!r}")
        for v in value:
            _check_value(key, v, item)
        return
    try:
        check_type(key, value, annotation)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _check_model(model: dict) -> None:
    name = model["name"]
    if name not in list_models():
        raise ConfigError(f"model.name must be one of {', '.join(list_models())}, got {name!r}")
    if "reinit" in model:
        _check_value("model.reinit", model["reinit"], "list[str] | None")
    options = {k: v for k, v in model.items() if k not in MODEL_KEYS}
    variant = VARIANTS[name]
    allowed = variant.option_names()
    for key in options:
        if key not in allowed:
            raise ConfigError(
                f"unknown key model.{key}; model takes name and: {', '.join(allowed)} "
                "(num_classes and in_chans come from the store)"
            )
    try:
        variant.config_class(**options)
    except UserError as error:
        raise ConfigError(f"model: {error}") from None


def _check_choices(config: TrainConfig) -> None:
    try:
        check_choice("optim.name", config.optim.name, OPTIMIZERS)
        check_choice("optim.lr_scaling", config.optim.lr_scaling, LR_SCALINGS)
        check_choice("schedule.kind", config.schedule.kind, SCHEDULES)
        check_choice("run.precision", config.run.precision, PRECISIONS)
        check_choice("run.eval_views", config.run.eval_views, EVAL_VIEWS)
        check_choice("data.normalize", config.data.normalize, NORMALIZE)
        check_choice("data.preprocessing", config.data.preprocessing, PREPROCESSING)
        check_choice("data.render", config.data.render, RENDER)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    positive = {
        "optim.batch_size": config.optim.batch_size,
        "optim.accumulate": config.optim.accumulate,
        "run.epochs": config.run.epochs,
        "run.max_bad_steps": config.run.max_bad_steps,
        "run.log_every_steps": config.run.log_every_steps,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be 1 or more, got {value}")
    if config.optim.lr <= 0:
        raise ConfigError(f"optim.lr must be positive, got {config.optim.lr}")
    if config.optim.batch_size % config.optim.accumulate:
        raise ConfigError(f"optim.accumulate {config.optim.accumulate} must divide "
                          f"optim.batch_size {config.optim.batch_size}")  # fmt: skip
    if config.optim.trust <= 0:
        raise ConfigError(f"optim.trust must be positive, got {config.optim.trust}")
    if config.schedule.warmup_epochs < 0:
        raise ConfigError(f"schedule.warmup_epochs must be 0 or more, got "
                          f"{config.schedule.warmup_epochs}")  # fmt: skip
    if config.schedule.warmup_epochs and config.optim.lr_scaling == "none":
        raise ConfigError("schedule.warmup_epochs rises from optim.lr to the scaled rate: it "
                          "needs optim.lr_scaling: linear")  # fmt: skip
    if config.data.classes is not None and config.data.class_ids is not None:
        raise ConfigError("data.classes and data.class_ids both choose classes; give one")
    if config.data.classes is not None and config.data.classes < 2:
        raise ConfigError(f"data.classes must be 2 or more, got {config.data.classes}")
    if config.data.workers < 0:
        raise ConfigError(f"data.workers must be 0 or more, got {config.data.workers}")
    if config.run.parallel not in ("ddp", "hybrid"):
        raise ConfigError(f"run.parallel is ddp or hybrid, got {config.run.parallel!r}")
    devices = config.run.tower_devices
    if devices is not None and len(devices) != 2:
        raise ConfigError(f"run.tower_devices names two devices, one per tower; got {devices}")


def parse_set(text: str) -> tuple[list[str], str]:
    """'section.key=value' -> (['section', 'key'], the value's text as given)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    return _key_path(key), raw


def _key_path(key: str) -> list[str]:
    path = key.strip().split(".")
    if len(path) != 2:
        raise ConfigError(f"--set expects section.key=value (one dot), got {key!r}")
    return path


def annotation_of(section: str, key: str, model: dict) -> str:
    """The type a recipe key takes, as written on its field ("" where none is known: then a
    value is read as YAML and the checks that follow judge it)."""
    if section == "model":
        if key == "name":
            return "str"
        if key == "reinit":
            return "list[str] | None"
        variant = VARIANTS.get(model.get("name", DEFAULT_MODEL))
        found = [f.type for f in fields(variant.config_class)] if variant else []
        names = [f.name for f in fields(variant.config_class)] if variant else []
        return found[names.index(key)] if key in names else ""
    if section in SECTIONS:
        for f in fields(SECTIONS[section]):
            if f.name == key:
                return f.type
    return ""


def load_config(path: str | Path | None = None, overrides=()) -> TrainConfig:
    """A recipe file (or the defaults) with overrides applied: "section.key=TEXT" as the
    command line gives it (read by the key's type: `read_value`), or ("section.key", value)
    for a value code already holds (a path, a number), which is taken as it is."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no recipe at {path}; the recipes are in configs/")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
    return apply_overrides(values, overrides)


def apply_overrides(values: dict, overrides) -> TrainConfig:
    """Apply overrides (see `load_config`) to a recipe's mapping, then check it (from_dict)."""
    if not isinstance(values, dict):
        return from_dict(values)  # refused there, with the message
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    for item in overrides:
        if isinstance(item, str):
            (section, key), text = parse_set(item)
            model = values.get("model") if isinstance(values.get("model"), dict) else {}
            value = read_value(text, annotation_of(section, key, model or {}))
        else:
            name, value = item
            section, key = _key_path(name)
        part = values.setdefault(section, {})
        if isinstance(part, dict):  # a section that is not a mapping is refused by from_dict
            part[key] = value
    return from_dict(values)
