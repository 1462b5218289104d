"""A small, deterministic YAML emitter for manifests (plain dicts, lists, str, int, bool, None).

No dependency: the rendered bytes must not change with a PyYAML version, because the recipes
in ``deploy/recipes/`` are compared byte for byte with ``render``'s output. Keys keep their
insertion order. A string is written plain only when it cannot be read back as anything else
(a bool, a null, a number, a date, an indicator); otherwise it is double-quoted with YAML
escapes, so every value reads back exactly as it was given (checked against PyYAML in the
tests).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["dump_all", "dump_document", "scalar"]

# Starts with a letter, '_' or '/', then letters, digits and a few punctuation marks; never ends
# with ':' and never holds ': ' or ' #' (no spaces at all).
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./=@+-]*(?::[A-Za-z0-9_./=@+-]+)*\Z")
# YAML 1.1 (PyYAML, kubectl's go-yaml v2 heritage) reads these as bools or null.
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _quote(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif (code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF)
              or 0xD800 <= code <= 0xDFFF):
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        elif code > 0xFFFF:
            out.append(f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def scalar(value: object) -> str:
    """One scalar as YAML text."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _RESERVED:
            return value
        return _quote(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _lines(value: object, indent: int) -> Iterable[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("mapping keys must be strings")
            k = scalar(key)
            if _block(item):
                yield f"{pad}{k}:"
                yield from _lines(item, indent + 2)
            else:
                yield f"{pad}{k}: {_inline(item)}"
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            if isinstance(item, Mapping) and item:
                first = True
                for line in _lines(item, indent + 2):
                    yield (f"{pad}- {line[indent + 2:]}" if first else line)
                    first = False
            elif isinstance(item, Sequence) and not isinstance(item, str) and item:
                yield f"{pad}-"
                yield from _lines(item, indent + 2)
            else:
                yield f"{pad}- {_inline(item)}"
    else:
        yield pad + scalar(value)


def _block(value: object) -> bool:
    """A non-empty mapping or list: written as an indented block (empty ones inline: {} / [])."""
    return bool(value) and (isinstance(value, Mapping) or (isinstance(value, Sequence) and not isinstance(value, str)))


def _inline(value: object) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[]"
    return scalar(value)


def dump_document(doc: Mapping[str, object]) -> str:
    """One document as YAML text, ending with a newline."""
    return "\n".join(_lines(doc, 0)) + "\n"


def dump_all(docs: Sequence[Mapping[str, object]], header: Sequence[str] = ()) -> str:
    """Documents separated by ``---``, after ``# `` comment lines from ``header``."""
    head = "".join(f"# {line}".rstrip() + "\n" for line in header)
    return head + "---\n".join(dump_document(d) for d in docs)
