"""The one declared schema of a checkpoint's metadata, and a JSON parser that cannot be blown up.

A checkpoint's ``__meta__`` record is JSON that anyone can edit, so before any of it is used:

1. ``parse_json(raw, max_bytes, max_depth)``: at most ``MAX_META_BYTES``; nesting at most
   ``MAX_DEPTH`` deep, measured *before* ``json.loads`` by a linear scan (100,000 nested ``[``
   would otherwise be a RecursionError inside the C parser);
2. ``validate(meta, METADATA)``: every field the program reads has a declared type and range --
   integers are integers (not ``true``, not ``1.5``, not ``Infinity``), counts are >= 0, rates are
   finite and positive, names are among the known choices, lists and strings have bounded sizes.

A violation is a ``SchemaError`` (a ValueError) naming the field and the value, e.g.
``metadata field trainer.step must be an integer in [0, 9223372036854775807], got -7``.
Fields a newer bptt or a user's ``extra`` adds are allowed where marked (``other=ANY``), still
bounded by the size and depth limits; what this bptt reads is never left unchecked.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

MAX_META_BYTES = 16 * 2**20       # 16 MiB of JSON: a word-level vocabulary of ~1M tokens fits
MAX_DEPTH = 32                    # bptt writes depth <= 6
MAX_INT = 2**63 - 1
MAX_SIZE = 2**31 - 1              # any network dimension


class SchemaError(ValueError):
    """Metadata that does not fit the schema (one line: field, expectation, value)."""


def _show(value) -> str:
    if isinstance(value, dict):
        return f"an object with {len(value)} keys"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    text = json.dumps(value) if isinstance(value, (bool, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(where: str, expected: str, value) -> None:
    raise SchemaError(f"metadata field {where or '(top level)'} must be {expected}, got {_show(value)}")


# ---------------------------------------------------------------- the types
class Spec:
    expected = "valid"

    def check(self, value, where: str) -> None:            # pragma: no cover - abstract
        raise NotImplementedError


class Int(Spec):
    def __init__(self, lo: int = 0, hi: int = MAX_INT):
        self.lo, self.hi = lo, hi
        self.expected = f"an integer in [{lo}, {hi}]"

    def check(self, value, where):
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            _fail(where, self.expected, value)


class Num(Spec):
    """A JSON number (int or float); finite unless ``finite=False``; in [lo, hi] (open ends optional)."""

    def __init__(self, lo=-math.inf, hi=math.inf, *, lo_open=False, hi_open=False, finite=True):
        self.lo, self.hi, self.lo_open, self.hi_open, self.finite = lo, hi, lo_open, hi_open, finite
        if lo == -math.inf and hi == math.inf:
            self.expected = "a finite number" if finite else "a number"
        else:
            left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
            self.expected = f"a finite number in {left}{lo:g}, {hi:g}{right}"

    def check(self, value, where):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(where, self.expected, value)
        if math.isnan(value) or math.isinf(value):
            if self.finite:
                _fail(where, self.expected, value)
            return
        if value < self.lo or value > self.hi or (self.lo_open and value == self.lo) or \
                (self.hi_open and value == self.hi):
            _fail(where, self.expected, value)


class Str(Spec):
    def __init__(self, max_len: int = 4096, choices=None, pattern: str | None = None):
        self.max_len, self.choices = max_len, None if choices is None else tuple(choices)
        self.pattern = None if pattern is None else re.compile(pattern)
        if self.choices is not None:
            self.expected = "one of " + ", ".join(json.dumps(c) for c in self.choices)
        elif pattern is not None:
            self.expected = f"a string matching {pattern}"
        else:
            self.expected = f"a string of at most {max_len} characters"

    def check(self, value, where):
        if not isinstance(value, str) or len(value) > self.max_len:
            _fail(where, self.expected, value)
        if self.choices is not None and value not in self.choices:
            _fail(where, self.expected, value)
        if self.pattern is not None and not self.pattern.fullmatch(value):
            _fail(where, self.expected, value)


class Bool(Spec):
    expected = "true or false"

    def check(self, value, where):
        if not isinstance(value, bool):
            _fail(where, self.expected, value)


class Opt(Spec):
    """``spec`` or null."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.expected = f"null or {spec.expected}"

    def check(self, value, where):
        if value is None:
            return
        try:
            self.spec.check(value, where)
        except SchemaError as error:             # the value itself is wrong (not a field inside it): say null is fine
            if str(error).startswith(f"metadata field {where or '(top level)'} must be "):
                _fail(where, self.expected, value)
            raise


class AnyJSON(Spec):
    """Anything JSON (already bounded in size and depth by ``parse_json``)."""
    expected = "JSON"

    def check(self, value, where):
        return None


class ScalarJSON(Spec):
    expected = "a number, string, true/false or null"

    def check(self, value, where):
        if not (value is None or isinstance(value, (bool, int, float))):
            Str(65536).check(value, where)


class List(Spec):
    def __init__(self, item: Spec, max_len: int = 1_000_000, min_len: int = 0, unique: bool = False):
        self.item, self.max_len, self.min_len, self.unique = item, max_len, min_len, unique
        self.expected = f"a list of {min_len} to {max_len} items" + (", all different" if unique else "")

    def check(self, value, where):
        if not isinstance(value, list) or not self.min_len <= len(value) <= self.max_len:
            _fail(where, self.expected, value)
        for i, item in enumerate(value):
            self.item.check(item, f"{where}[{i}]")
        if self.unique and len(set(value)) != len(value):
            _fail(where, self.expected, value)


class Dict(Spec):
    """A JSON object: ``fields`` name -> Spec (``required`` must be present); other keys are
    refused unless ``other`` gives the Spec their values must meet."""

    def __init__(self, fields: dict, required=(), other: Spec | None = None, max_items: int = 10_000):
        self.fields, self.required, self.other, self.max_items = fields, tuple(required), other, max_items
        self.expected = "an object"

    def check(self, value, where):
        if not isinstance(value, dict):
            _fail(where, self.expected, value)
        if len(value) > self.max_items:
            _fail(where, f"an object with at most {self.max_items} keys", value)
        for name in self.required:
            if name not in value:
                raise SchemaError(f"metadata field {_join(where, name)} is missing")
        for name, item in value.items():
            spec = self.fields.get(name, self.other)
            if spec is None:
                raise SchemaError(f"metadata field {_join(where, name)} is not a field bptt knows "
                                  f"(known: {', '.join(sorted(self.fields))})")
            spec.check(item, _join(where, name))


class Lazy(Spec):
    """A Spec built on first use (recursive schemas: a warm-up schedule wraps another schedule)."""

    def __init__(self, build):
        self.build, self.spec = build, None

    def check(self, value, where):
        if self.spec is None:
            self.spec = self.build()
        self.spec.check(value, where)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def validate(value, spec: Spec, where: str = "") -> None:
    spec.check(value, where)


# ---------------------------------------------------------------- parsing without recursion blow-ups
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def nesting_depth(raw: bytes) -> int:
    """The deepest ``[``/``{`` nesting of JSON text, brackets inside strings ignored (linear time)."""
    bare = np.frombuffer(_STRING.sub(b'""', raw), np.uint8)
    step = np.zeros(bare.shape, np.int64)
    step[(bare == ord("[")) | (bare == ord("{"))] = 1
    step[(bare == ord("]")) | (bare == ord("}"))] = -1
    return int(np.cumsum(step).max()) if step.size else 0


def parse_json(raw: bytes, max_bytes: int = MAX_META_BYTES, max_depth: int = MAX_DEPTH):
    """``json.loads`` of UTF-8 ``raw`` after bounding its size and nesting depth (SchemaError,
    ValueError for text that is not UTF-8 JSON)."""
    if len(raw) > max_bytes:
        raise SchemaError(f"metadata is {len(raw):,} bytes, more than the {max_bytes:,} bptt reads")
    depth = nesting_depth(raw)
    if depth > max_depth:
        raise SchemaError(f"metadata is nested {depth} levels deep, more than the {max_depth} bptt reads")
    try:
        text = raw.decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError as error:
        raise ValueError(f"its metadata is not UTF-8 JSON ({error.reason} at byte {error.start})") from None
    except (json.JSONDecodeError, RecursionError, ValueError) as error:   # ValueError: a 5000-digit integer
        raise ValueError(f"its metadata is not JSON ({error})") from None


# ---------------------------------------------------------------- bptt's checkpoint metadata
def _metadata() -> Dict:
    from ..init import RECURRENT_INITS
    from ..layers.factory import CELLS
    from ..layers.gru import GRU_VARIANTS
    from ..losses import LOSSES
    from ..training.clip import CLIP_MODES
    from ..training.numerics import POLICIES
    from ..training.optim import OPTIMIZERS
    from ..training.schedules import SCHEDULES

    count = Int(0)
    size = Int(1, MAX_SIZE)
    positive = Num(0, math.inf, lo_open=True)
    nonnegative = Num(0)
    fraction = Num(0, 1, hi_open=True)
    sha = Str(pattern=r"[0-9a-f]{64}")
    dtype = Str(choices=("float32", "float64"))
    rng = Dict({"bit_generator": Str(choices=("PCG64", "PCG64DXSM")),
                "state": Dict({"state": Int(0, 2**128 - 1), "inc": Int(0, 2**128 - 1)}, required=("state", "inc")),
                "has_uint32": Int(0, 1), "uinteger": Int(0, 2**32 - 1)},
               required=("bit_generator", "state", "has_uint32", "uinteger"))
    config = Dict({"input_size": size, "hidden_size": size, "output_size": Opt(size), "num_layers": Int(1, 100_000),
                   "cell": Str(choices=CELLS), "nonlinearity": Str(choices=("tanh", "relu")), "bias": Bool(),
                   "seed": Opt(count), "dtype": dtype, "loss": Str(choices=LOSSES), "bidirectional": Bool(),
                   "dropout": fraction, "gru_variant": Str(choices=GRU_VARIANTS), "forget_bias": Num(),
                   "recurrent_init": Str(choices=RECURRENT_INITS), "spectral_radius": Opt(positive)},
                  required=("input_size", "hidden_size", "num_layers", "cell"),
                  other=ScalarJSON())               # a newer Network's option: Network(**config) names it
    vocabulary = Dict({"level": Str(choices=("char", "word")),
                       "tokens": List(Str(65536), max_len=MAX_META_BYTES // 3, min_len=1, unique=True),
                       "unk": Opt(Str(65536)), "word_rule": Str(choices=("simple", "lossless"))},
                      required=("tokens",))
    hyper = Dict({"lr": positive, "weight_decay": nonnegative, "momentum": nonnegative, "dampening": nonnegative,
                  "nesterov": Bool(), "lr_decay": nonnegative, "initial_accumulator_value": nonnegative,
                  "eps": positive, "alpha": Num(0, 1), "centered": Bool(),
                  "betas": List(Num(0, 1, hi_open=True), max_len=2, min_len=2), "amsgrad": Bool(),
                  "decoupled_weight_decay": Bool()}, required=("lr",), other=ScalarJSON())
    optimizer = Dict({"kind": Str(choices=OPTIMIZERS), "hyper": hyper, "t": count}, required=("kind", "hyper"),
                     other=AnyJSON())
    schedule = Lazy(lambda: Dict({"kind": Str(choices=SCHEDULES + ("warmup", "offset")), "base_lr": positive,
                                  "every": Int(1), "gamma": positive, "steps": count, "inner": schedule,
                                  "current_lr": positive, "factor": positive, "last_loss": Opt(Num(finite=False)),
                                  "halvings": count, "start": count}, required=("kind",), other=ScalarJSON()))
    numerics = Dict({"policy": Str(choices=POLICIES), "nonfinite": count, "skipped": count, "rollbacks": count,
                     "lr_scale": Num(0, 1, lo_open=True)}, other=ScalarJSON())
    slots = ("momentum_buffer", "sum", "square_avg", "grad_avg", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    trainer = Dict({"step": count, "updates": count, "optimizer": optimizer,
                    "optimizer_slots": List(Str(choices=slots), max_len=len(slots), unique=True),
                    "schedule": Opt(schedule), "rng": rng,
                    "history": List(Dict({"step": count, "val_loss": Num(finite=False)}, required=("step",),
                                         other=AnyJSON())),
                    "carried_state": Opt(Str(choices=("tuple", "array"))), "carried_parts": Int(0, 8),
                    "numerics": Opt(numerics)},
                   required=("step", "updates", "optimizer", "schedule", "rng", "history"),
                   other=AnyJSON())                 # records a newer Trainer adds (still size/depth bounded)
    maybe_size = Opt(Int(1, MAX_SIZE))
    train_args = Dict({"text": Opt(Str(4096)), "level": Str(choices=("char", "word")), "max_vocab": maybe_size,
                       "hidden": size, "layers": Int(1, 100_000), "cell": Str(choices=CELLS),
                       "nonlinearity": Str(choices=("tanh", "relu")), "dropout": fraction, "seq_len": size,
                       "batch": size, "seed": count, "dtype": dtype, "optimizer": Str(choices=OPTIMIZERS),
                       "lr": positive, "momentum": nonnegative, "nesterov": Bool(), "weight_decay": nonnegative,
                       "schedule": Str(choices=SCHEDULES), "lr_every": size, "lr_gamma": positive, "warmup": count,
                       "clip_mode": Str(choices=CLIP_MODES), "clip": Num(), "truncation":
                       Str(choices=("chunked", "tbptt", "window")), "k": maybe_size, "k1": maybe_size,
                       "k2": maybe_size, "val_fraction": fraction, "eval_every": count},
                      # what a resume reads without a default (bptt train and bptt import always write them)
                      required=("optimizer", "lr", "schedule"),
                      other=AnyJSON())              # flags a newer bptt train adds
    extra = Dict({"train_args": train_args, "text_source": Opt(Str(4096)), "text_sha256": Opt(sha),
                  "mpi_ranks": Int(1, 1_000_000)}, other=AnyJSON())
    return Dict({"format": Str(64), "version": Int(1), "bptt_version": Str(64), "config": config,
                 "vocabulary": Opt(vocabulary), "metrics": Dict({}, other=AnyJSON()), "extra": extra,
                 "dropout_rng": rng, "trainer": trainer, "sha256": sha},
                required=("format", "version", "config", "sha256"), other=AnyJSON())


METADATA = Lazy(_metadata)
