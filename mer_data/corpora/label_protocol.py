"""IEMOCAP label protocols: which category codes a conversion keeps, and which it merges into one class.

    --classes ang,exc,fru,hap,neu,sad    six classes, one code each (the default, preset `iemocap6`)
    --classes ang,hap+exc,neu,sad        four classes; `hap+exc` is one class named `hap` (its first code)
    --classes ang,joy=hap+exc,neu,sad    the same four classes, the merged one named `joy`
    --classes iemocap4                   a preset: ang,hap+exc,neu,sad (the 4-class protocol of the field)
    --classes all                        every code, one class each

A class is `CODE[+CODE...]`, optionally prefixed by `NAME=`; its name is NAME, else its first code.
Utterances of codes in no class are excluded (excluded.jsonl), as before.

The task the trainer sets up follows from the protocol: a list that only selects codes trains as
one-vs-rest binary tasks per class (the paper's six-class protocol, unchanged); a protocol that merges
codes (iemocap4) trains one single-label classifier and reports WA, UA and per-class F1.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from mer_data.corpora.iemocap import IEMOCAP_CODES

ONE_VS_REST = "one-vs-rest"
SINGLE_LABEL = "single-label"
LABEL_TASKS = (ONE_VS_REST, SINGLE_LABEL)
PRESETS = {
    "iemocap6": ("ang", "exc", "fru", "hap", "neu", "sad"),
    "iemocap4": ("ang", "hap+exc", "neu", "sad"),
}
ALL = "all"
CLASS_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ProtocolError(ValueError):
    """A --classes value that cannot be a label protocol (the message says which part and why)."""


@dataclass(frozen=True)
class LabelProtocol:
    """Classes in order, each a name and the category codes it merges."""

    spec: tuple[str, ...]                       # the class tokens as given (ConvertOptions.classes)
    classes: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.classes)

    @property
    def name(self) -> str | None:
        """The preset this protocol equals (whatever way it was spelt), or None."""
        return next((preset for preset, tokens in PRESETS.items() if parse_classes(",".join(tokens)) == self), None)

    @property
    def task(self) -> str:
        merges = any(len(codes) > 1 for _, codes in self.classes)
        return SINGLE_LABEL if merges else ONE_VS_REST

    def class_of(self, code: str | None) -> str | None:
        """The class a category code belongs to, or None (excluded)."""
        return next((name for name, codes in self.classes if code in codes), None)

    def to_json(self) -> dict:
        """The dataset card's `label_protocol`."""
        return {"name": self.name, "spec": ",".join(self.spec), "task": self.task,
                "classes": [{"name": name, "codes": list(codes)} for name, codes in self.classes]}


def parse_classes(value: str | tuple[str, ...] | list[str]) -> LabelProtocol:
    """The protocol of a --classes value (a preset name, `all`, or class tokens); ProtocolError otherwise."""
    text = (value if isinstance(value, str) else ",".join(value)).strip()
    if not text:
        raise ProtocolError("no class given: name category codes (e.g. ang,hap+exc,neu,sad), a preset "
                            f"({', '.join(PRESETS)}) or '{ALL}'")
    if text == ALL:
        return LabelProtocol((ALL,), tuple((code, (code,)) for code in IEMOCAP_CODES))
    tokens = PRESETS.get(text) or tuple(token.strip() for token in text.split(","))
    classes = [_parse_class(token, number) for number, token in enumerate(tokens, 1)]
    _check_unique(classes)
    return LabelProtocol(tokens, tuple(classes))


def _parse_class(token: str, number: int) -> tuple[str, tuple[str, ...]]:
    where = f"class {number} ({token!r})" if token else f"class {number}"
    if not token:
        raise ProtocolError(f"{where} is empty: remove the extra comma")
    name, _, merged = token.rpartition("=")
    codes = tuple(code.strip() for code in merged.split("+"))
    if any(not code for code in codes):
        raise ProtocolError(f"{where}: an empty code around '+'")
    unknown = [code for code in codes if code not in IEMOCAP_CODES]
    if unknown:
        preset = " or a preset (" + ", ".join(PRESETS) + ")" if len(codes) == 1 and "=" not in token else ""
        raise ProtocolError(f"{where}: unknown category code {', '.join(map(repr, unknown))}; known: "
                            f"{', '.join(IEMOCAP_CODES)}{preset}")
    name = name.strip() or codes[0]
    if not CLASS_NAME.match(name):
        raise ProtocolError(f"{where}: class name {name!r} must be lower-case letters, digits or '_', "
                            "starting with a letter")
    return name, codes


def _check_unique(classes: list[tuple[str, tuple[str, ...]]]) -> None:
    seen_codes: dict[str, str] = {}
    seen_names: set[str] = set()
    for name, codes in classes:
        if name in seen_names:
            raise ProtocolError(f"class name {name!r} is given twice: name merged classes apart with NAME=CODES")
        seen_names.add(name)
        for code in codes:
            if code in seen_codes:
                raise ProtocolError(f"category code {code!r} is in two classes ({seen_codes[code]!r} and {name!r}): "
                                    "a code belongs to one class")
            seen_codes[code] = name
