"""Recipe schemas: a family's keys with their types, ranges and defaults, declared once as typed dataclasses in
`recipes/<family>/schema.py` (its `Recipe`), and the checks that come from them before any work.

A field's annotation is its type (`int`, `float`, `bool`, `str`, `Literal[...]`, `tuple[...]`, `list`, `dict`,
`X | None`, a section) and its range (`Annotated[int, Range(1)]`); its default is the `base` recipe's value. A
section is a nested dataclass; a plain `dict` is an open section (e.g. a suite step's `sets`, checked by the step).
Hand-written rather than pydantic: the rules are these few, and every message has to be one line that names the key.
"""
import copy
import dataclasses
import math
import types
import typing
from functools import partial
from typing import Annotated, Any, Literal, Union

from mae_core.errors import MaeBenchError

MAX_IMG_SIZE = 8192  # a larger side would allocate terabytes (and the paper's largest input is 448)


@dataclasses.dataclass(frozen=True)
class Range:
    """A number in [lo, hi] (either end open with lo_open / hi_open; None: no bound)."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def holds(self, v) -> bool:
        if isinstance(v, float) and math.isnan(v):
            return False
        low = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
        return low and (self.hi is None or (v < self.hi if self.hi_open else v <= self.hi))

    def __str__(self):
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        return f"in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"


class NonEmpty:
    """A non-empty string (a path)."""
    holds = staticmethod(bool)
    words = "a path (a non-empty string)"


class Overlay:
    """A partial recipe over this recipe's own sections (`linear_probe.optim.blr` has `optim.blr`'s type and range)."""


Positive = Annotated[int, Range(1)]
NonNegative = Annotated[int, Range(0)]
Probability = Annotated[float, Range(0, 1)]
Fraction = Annotated[float, Range(0, 1, hi_open=True)]
MaskRatio = Annotated[float, Range(0, 1, lo_open=True, hi_open=True)]  # pretraining without masking is not MAE
NonNegativeFloat = Annotated[float, Range(0)]
PositiveFloat = Annotated[float, Range(0, lo_open=True)]
ImgSize = Annotated[int, Range(1, MAX_IMG_SIZE)]
CpuLinear = Literal["auto", "onednn", "aten"]  # mae_core.cpu_linear.CHOICES (this module is torch-free)
Features = Literal["paper", "method"]  # model.features: mae_core.feature_rules.CHOICES
LayerDecay = Annotated[float, Range(0, 1, lo_open=True)]
Path = Annotated[str, NonEmpty()]


def _is_section(kind) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def section(cls):
    """A recipe section (or a whole recipe): a dataclass whose fields are its keys. A field typed as a section and
    given no default takes that section's defaults; list, dict and section defaults are copied for each use."""
    for name, kind in cls.__dict__.get("__annotations__", {}).items():
        value = cls.__dict__.get(name, dataclasses.MISSING)
        if value is dataclasses.MISSING and _is_section(kind):
            setattr(cls, name, dataclasses.field(default_factory=kind))
        elif isinstance(value, (list, dict)) or dataclasses.is_dataclass(value) and not isinstance(value, type):
            setattr(cls, name, dataclasses.field(default_factory=partial(copy.deepcopy, value)))
    return dataclasses.dataclass(kw_only=True)(cls)


def with_defaults(cls, **values):
    """`cls` with other defaults and the same keys, types and ranges (a section's new defaults given as a dict)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    namespace = {"__annotations__": {}, "__module__": cls.__module__, "__doc__": cls.__doc__}
    for name, value in values.items():
        kind = hints[name]
        if isinstance(value, dict) and _is_section(kind):
            kind = with_defaults(kind, **value)
        else:
            namespace[name] = value
        namespace["__annotations__"][name] = kind
    return section(type(cls.__name__, (cls,), namespace))


def defaults(schema) -> dict:
    """The `base` recipe: every key's default, in declaration order."""
    return dataclasses.asdict(schema())


def _split(kind):
    """(type, rules) of an annotation."""
    if typing.get_origin(kind) is Annotated:
        return kind.__origin__, kind.__metadata__
    return kind, ()


def _union_args(kind):
    return typing.get_args(kind) if typing.get_origin(kind) in (Union, types.UnionType) else None


def describe(kind) -> str:
    """What a value of `kind` must be, in words: 'an integer >= 1', 'one of token, avg', ..."""
    base, rules = _split(kind)
    if _union_args(base):
        return " or ".join("None" if a is type(None) else describe(a) for a in _union_args(base))
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list or tuple of {len(args)}: " + ", ".join(map(describe, args))
        return "a list or tuple" + (f", each {describe(args[0])}" if args else "")
    if origin is dict or base is dict:
        return "a dict" + (f" of {describe(args[1])}" if args else "")
    if _is_section(base):
        return f"a section ({', '.join(f.name for f in dataclasses.fields(base))})"
    if rules and hasattr(rules[0], "words"):
        return rules[0].words
    words = {int: "an integer", float: "a number", bool: "True or False", str: "a string", list: "a list or tuple",
             Any: "anything"}[base]
    return " ".join([words, *map(str, rules)])


def _fits(kind, value) -> bool:
    """Whether `value` has the type of `kind` and is in its range (a section's keys are checked by `Checker`)."""
    base, rules = _split(kind)
    if _union_args(base):
        return any(value is None if a is type(None) else _fits(a, value) for a in _union_args(base))
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is Literal:
        ok = value in args and type(value) in {type(a) for a in args}
    elif origin in (tuple, list) or base is list:
        ok = isinstance(value, (list, tuple))  # a recipe's tuple may be given as a list, and back
        if ok and origin is tuple and args and args[-1] is not Ellipsis:
            ok = len(value) == len(args) and all(_fits(a, v) for a, v in zip(args, value))
        elif ok and args:
            ok = all(_fits(args[0], v) for v in value)
    elif base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif base is Any:
        ok = True
    else:  # str, dict, a section
        ok = isinstance(value, dict if origin is dict or _is_section(base) else base)
    return ok and all(rule.holds(value) for rule in rules)


class Checker:
    """Checks a recipe file's values and `--set` overrides against a schema; `origin` (a file, `--set`) starts
    each message."""

    def __init__(self, schema, origin: str):
        self.schema, self.origin = schema, origin

    def _fail(self, message: str):
        raise MaeBenchError(f"{self.origin}: {message}")

    def _field(self, kind, part: str, name: str, where: str):
        """The annotation of key `part` under `kind` (named `where`); `Any` below an open section."""
        base, rules = _split(kind)
        if _is_section(base) or any(isinstance(r, Overlay) for r in rules):
            hints = typing.get_type_hints(base, include_extras=True)
            if not _is_section(base):  # an overlay: the recipe's own sections
                hints = {k: h for k, h in typing.get_type_hints(self.schema, include_extras=True).items()
                         if _is_section(_split(h)[0])}
            if part not in hints:
                self._fail(f"unknown recipe key {name!r}: {where} has {', '.join(hints)}")
            return hints[part]
        if typing.get_origin(base) is dict:
            return typing.get_args(base)[1]
        if base is dict or base is Any:
            return Any
        self._fail(f"unknown recipe key {name!r}: {where} is not a section")

    def value(self, kind, value, name: str) -> None:
        """`value` (of key `name`) has the type and range of `kind`; a dict under a section is checked key by key."""
        base, rules = _split(kind)
        if isinstance(value, dict) and (_is_section(base) or typing.get_origin(base) is dict or
                                         any(isinstance(r, Overlay) for r in rules)):
            for key, v in value.items():
                if key != "_delete_":  # mmengine's "replace, do not merge"
                    self.value(self._field(kind, key, f"{name}.{key}", name), v, f"{name}.{key}")
        elif not _fits(kind, value):
            self._fail(f"recipe value {name}={value!r} is invalid: it must be {describe(kind)}")

    def recipe(self, values: dict) -> None:
        """A recipe file's values (its `_name` helpers and the loader's `recipe_name` aside)."""
        for key, v in values.items():
            if not key.startswith("_") and key != "recipe_name":
                self.value(self._field(self.schema, key, key, "the recipe"), v, key)

    def overrides(self, sets: dict) -> None:
        """`--set` overrides: dotted keys of the schema, each value of its key's type and range."""
        for dotted, v in sets.items():
            kind, parts = self.schema, dotted.split(".")
            for i, part in enumerate(parts):
                kind = self._field(kind, part, dotted, ".".join(parts[:i]) or "the recipe")
            base = _split(kind)[0]
            if _is_section(base) and not isinstance(v, dict):  # `--set knn=None` would remove the whole section
                keys = [f.name for f in dataclasses.fields(base)]
                raise MaeBenchError(f"--set {dotted}={v!r}: {dotted} is a section ({', '.join(keys)}); set one of "
                                    f"its keys, e.g. {dotted}.{keys[0]}=...")
            self.value(kind, v, dotted)
