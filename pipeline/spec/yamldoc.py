"""YAML documents that remember where every value came from, checked by JSON Schema.

Errors point at ``file:line:column`` and the JSON pointer of the offending value,
say what was expected, and suggest a fix (from the schema's ``x-hint`` keyword or
the closest allowed key).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import SpecError


@dataclass(frozen=True)
class Doc:
    """A parsed YAML document and the position of each value, keyed by JSON pointer."""

    path: Path
    display: str
    data: Any
    marks: dict[str, tuple[int, int]]

    def where(self, pointer: str) -> str:
        """Return ``file:line:col: pointer`` for a value, falling back to its nearest parent."""
        p = pointer
        while p not in self.marks and p:
            p = p.rsplit("/", 1)[0]
        line, col = self.marks.get(p, (1, 1))
        return f"{self.display}:{line}:{col}: {pointer or '/'}"


def pointer_join(base: str, key: str | int) -> str:
    """Append one JSON-pointer segment."""
    return f"{base}/{str(key).replace('~', '~0').replace('/', '~1')}"


class _Constructor(yaml.constructor.SafeConstructor):
    pass


def _to_python(node: yaml.Node, pointer: str, marks: dict[str, tuple[int, int]], display: str) -> Any:
    marks[pointer] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _Constructor().construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, bool)):
                raise SpecError(f"{display}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}: "
                                f"{pointer or '/'}: keys must be plain names", "write the key as text")
            key = str(key) if not isinstance(key, str) else key
            child = pointer_join(pointer, key)
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise SpecError(f"{display}:{line}:{col}: {child}: key {key!r} appears twice",
                                "keep one of the two entries")
            marks[child + "#key"] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _to_python(value_node, child, marks, display)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, pointer_join(pointer, i), marks, display) for i, item in enumerate(node.value)]
    return _Constructor().construct_object(node, deep=True)


def load_doc(path: Path, display: str | None = None) -> Doc:
    """Parse one YAML file, keeping positions; malformed YAML raises :class:`SpecError`."""
    display = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{display}: cannot read: {exc.strerror}", "check the path") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{display}: not UTF-8 text (byte {exc.start})", "save the file as UTF-8") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{display}:{mark.line + 1}:{mark.column + 1}" if mark else display
        raise SpecError(f"{where}: malformed YAML: {exc.problem or exc.context}",
                        "fix the YAML syntax at that position (indentation, quotes, ':' after keys)") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{display}: malformed YAML: {exc}", "fix the YAML syntax") from None
    if node is None:
        raise SpecError(f"{display}:1:1: /: the file is empty", "start from specs/sample.yaml")
    marks: dict[str, tuple[int, int]] = {}
    try:
        data = _to_python(node, "", marks, display)
    except RecursionError:
        raise SpecError(f"{display}: a YAML alias refers to itself (or nests too deeply)",
                        "replace the recursive *alias with plain values") from None
    return Doc(path=path, display=display, data=data, marks=marks)


@cache
def load_schema(path: Path) -> dict[str, Any]:
    """Load a JSON Schema file once."""
    # Not checked against the meta-schema here (a fifth of a second per run): the shipped
    # schemas are, by a test, and a project's own copy fails loudly if it is not one.
    with open(path, encoding="utf-8") as fp:
        schema: dict[str, Any] = json.load(fp)
    return schema


def _describe_type(schema: dict[str, Any]) -> str:
    t: Any = schema.get("type")
    names: dict[str, str] = {"string": "text", "integer": "a whole number", "boolean": "true or false",
                             "array": "a list",
             "object": "a mapping", "number": "a number"}
    if isinstance(t, list):
        return " or ".join(names.get(str(x), str(x)) for x in t)
    return names.get(str(t), str(t))


def _typename(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list",
            dict: "a mapping", type(None): "nothing (null)"}.get(type(value), type(value).__name__)


def _unknown_keys(err: jsonschema.ValidationError, pointer: str, schema: dict[str, Any],
                  hint: str | None) -> list[tuple[str, str]] | None:
    if not isinstance(err.instance, dict):
        return None
    allowed = sorted(schema.get("properties", {}))
    out = []
    for key in sorted(set(err.instance) - set(allowed)):
        close = difflib.get_close_matches(key, allowed, n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"allowed keys here: {', '.join(allowed)}"
        out.append((pointer_join(pointer, key) + "#key", f"unknown key {key!r}; fix: {fix}"))
    return out


def _missing_keys(err: jsonschema.ValidationError, pointer: str, schema: dict[str, Any],
                  hint: str | None) -> list[tuple[str, str]]:
    missing = [k for k in err.validator_value if k not in err.instance]
    return [(pointer, f"missing required key {k!r}; fix: {hint or f'add {k}: ...'}") for k in missing]


def _not_allowed(err: jsonschema.ValidationError, pointer: str, schema: dict[str, Any],
                 hint: str | None) -> list[tuple[str, str]]:
    inst, want = err.instance, err.validator_value
    if err.validator == "const" and str(inst) == str(want):
        return [(pointer, f"{inst!r} is text; expected the number {want}; fix: write {want} without quotes")]
    allowed = want if err.validator == "enum" else [want]
    close = difflib.get_close_matches(str(inst), [str(a) for a in allowed], n=1)
    fix = f"did you mean {close[0]!r}?" if close else (hint or f"use one of: {', '.join(map(str, allowed))}")
    return [(pointer, f"{inst!r} is not one of {', '.join(map(str, allowed))}; fix: {fix}")]


def _one_of(err: jsonschema.ValidationError, pointer: str, schema: dict[str, Any],
            hint: str | None) -> list[tuple[str, str]] | None:
    needs = [", ".join(s.get("required", [])) for s in err.validator_value if s.get("required")]
    return [(pointer, f"needs one of: {' or '.join(needs)}; fix: {hint or 'add one of them'}")] if needs else None


def _simple(text: Callable[[jsonschema.ValidationError, dict[str, Any]], str], default_fix: str) -> _Rule:
    def rule(err: jsonschema.ValidationError, pointer: str, schema: dict[str, Any],
             hint: str | None) -> list[tuple[str, str]]:
        return [(pointer, f"{text(err, schema)}; fix: {hint or default_fix}")]
    return rule


_Rule = Callable[[jsonschema.ValidationError, str, dict[str, Any], str | None], "list[tuple[str, str]] | None"]

# One message per kind of schema failure, each with its fix.
_RULES: dict[str, _Rule] = {
    "additionalProperties": _unknown_keys,
    "required": _missing_keys,
    "const": _not_allowed,
    "enum": _not_allowed,
    "anyOf": _one_of,
    "oneOf": _one_of,
    "type": _simple(lambda e, s: f"expected {_describe_type(s)}, got {_typename(e.instance)}", "change the value"),
    "pattern": _simple(lambda e, s: f"{e.instance!r} does not match the pattern {e.validator_value!r}",
                       "change the value"),
    "uniqueItems": _simple(lambda e, s: "the list has duplicate entries", "remove the duplicates"),
    "minItems": _simple(lambda e, s: f"the list needs at least {e.validator_value} entries", "add entries"),
    "propertyNames": _simple(lambda e, s: f"bad key: {e.message}", "rename the key"),
}


def _messages(err: jsonschema.ValidationError, doc: Doc) -> list[tuple[str, str]]:
    """Turn one schema error into (pointer, one-line message with fix)."""
    pointer = "".join(pointer_join("", p) for p in err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    hint = schema.get("x-hint")
    rule = _RULES.get(str(err.validator))
    found = rule(err, pointer, schema, hint) if rule is not None else None
    return found if found is not None else [(pointer, f"{err.message}; fix: {hint or 'see the schema'}")]


def schema_problems(doc: Doc, schema_path: Path) -> list[str]:
    """Validate ``doc`` against a JSON Schema; return one positioned line per problem."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_path))
    out: list[str] = []
    for err in sorted(validator.iter_errors(doc.data), key=lambda e: (list(map(str, e.absolute_path)), e.validator)):
        # if/then failures repeat their 'then' sub-errors; report only the leaves.
        if err.validator in ("if", "then", "allOf"):
            continue
        for pointer, message in _messages(err, doc):
            where = doc.where(pointer) if not pointer.endswith("#key") else _key_where(doc, pointer)
            line = f"{where}: {message}"
            if line not in out:
                out.append(line)
    return out


def _key_where(doc: Doc, pointer: str) -> str:
    line, col = doc.marks.get(pointer, doc.marks.get(pointer[:-4], (1, 1)))
    return f"{doc.display}:{line}:{col}: {pointer[:-4]}"


def raise_problems(problems: list[str]) -> None:
    """Raise one :class:`SpecError` listing every problem on its own line."""
    if problems:
        raise SpecError("\n".join(problems))
