"""YAML documents that remember where every value came from, checked by JSON Schema.

Errors point at ``file:line:column`` and the JSON pointer of the offending value,
say what was expected, and suggest a fix (from the schema's ``x-hint`` keyword or
the closest allowed key).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import SpecError
from ..fsutil import write_bytes_atomic

if TYPE_CHECKING:
    import jsonschema


@dataclass(frozen=True)
class Doc:
    """A parsed YAML document and the position of each value, keyed by JSON pointer."""

    path: Path
    display: str
    data: Any
    marks: dict[str, tuple[int, int]]
    sha256: str | None = None
    """Of the file's bytes (None for a document made in memory)."""
    flags: Mapping[str, str] | None = None
    """For a document a command made from its options: JSON pointer -> the flag that set it."""

    def where(self, pointer: str) -> str:
        """Return ``file:line:col: pointer`` for a value, falling back to its nearest parent.

        A document made from a command's options has no lines: its values are named
        by the flag that set them (``aero-media build-fat: --label``), else by pointer.
        """
        if self.flags is not None:
            p = pointer.removesuffix("#key")
            while p and p not in self.flags:
                p = p.rsplit("/", 1)[0]
            return f"{self.display}: {self.flags[p] if p else shown_pointer(pointer)}"
        p = pointer
        while p not in self.marks and p:
            p = p.rsplit("/", 1)[0]
        line, col = self.marks.get(p, (1, 1))
        return f"{self.display}:{line}:{col}: {shown_pointer(pointer)}"


def shown_pointer(pointer: str) -> str:
    """A JSON pointer as a message shows it: unescaped, so a key with slashes reads as typed."""
    return (pointer.replace("~1", "/").replace("~0", "~")) or "/"


def pointer_join(base: str, key: str | int) -> str:
    """Append one JSON-pointer segment."""
    return f"{base}/{str(key).replace('~', '~0').replace('/', '~1')}"


# Specs are small (the sample has ~150 values). These bounds stop a hostile file in
# specs/ (a million nested brackets, a megabyte-long number) from hanging every command.
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 40
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}
_COLLECTION_TAGS = {"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}
_MERGE_TAG = "tag:yaml.org,2002:merge"
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _pos(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _check_events(text: str, display: str, loader: Any = None) -> None:
    """Refuse, from the event stream and before anything is composed, what a spec never needs.

    YAML's composer recurses once per level (a C stack overflow on deep input), so
    depth is bounded here first. Anchors and aliases are refused outright: a spec
    is a page of plain values, and an alias is how a 300-byte file expands to 10^9.
    Explicit tags other than YAML's core ones, and a second document, are refused too.
    """
    def fail(event: yaml.Event, what: str, fix: str) -> SpecError:
        line, col = _pos(event.start_mark)
        return SpecError(f"{display}:{line}:{col}: {what}", fix)

    depth = documents = 0
    for event in yaml.parse(text, Loader=loader or _Loader):
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise fail(event, "the file holds more than one YAML document",
                           "keep one document per file (remove the extra '---')")
        elif isinstance(event, yaml.AliasEvent) or (isinstance(event, yaml.NodeEvent) and event.anchor is not None):
            raise fail(event, "anchors and aliases are not allowed in a spec",
                       "remove the &anchor and *alias marks and write the values out in full")
        elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            tag = event.tag
            if tag not in (None, "!") and tag not in (_PLAIN_TAGS if isinstance(event, yaml.ScalarEvent)
                                                      else _COLLECTION_TAGS):
                raise fail(event, f"the YAML tag {tag} is not allowed in a spec",
                           "remove the tag and write a plain value")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise fail(event, f"nested more than {MAX_DEPTH} levels deep",
                               "flatten the structure: a spec needs only a few levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Values:
    """Plain values from a composed node tree, with the position of each, keyed by JSON pointer."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.marks: dict[str, tuple[int, int]] = {}
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, pointer: str, what: str, fix: str) -> SpecError:
        line, col = _pos(node.start_mark)
        return SpecError(f"{self.display}:{line}:{col}: {pointer or '/'}: {what}", fix)

    def value(self, node: yaml.Node, pointer: str) -> Any:
        # Recursion is bounded: _check_events refused anything deeper than MAX_DEPTH.
        self.marks[pointer] = _pos(node.start_mark)
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, pointer_join(pointer, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._key(key_node, pointer, out)
                self.marks[pointer_join(pointer, key) + "#key"] = _pos(key_node.start_mark)
                out[key] = self.value(value_node, pointer_join(pointer, key))
            return out
        return self._scalar(node, pointer)

    def _scalar(self, node: yaml.Node, pointer: str) -> Any:
        tag, text = node.tag, str(node.value)
        if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") and len(text) > MAX_NUMBER_CHARS:
            raise self.fail(node, pointer, f"a number of {len(text)} characters",
                            "quote it: a sha256 of only digits reads as a number in YAML" if len(text) == 64
                            else "write a realistic number, or quote it to make it text")
        if tag not in _PLAIN_TAGS:
            # A YAML 1.1 timestamp or the like: keep the text the author wrote.
            return text
        try:
            return self.constructor.construct_object(node)
        except (ValueError, yaml.YAMLError) as exc:
            raise self.fail(node, pointer, f"cannot read {text[:40]!r} as {tag.rsplit(':', 1)[1]} ({exc})",
                            "quote the value to make it text") from None

    def _key(self, node: yaml.Node, pointer: str, mapping: dict[str, Any]) -> str:
        if node.tag == _MERGE_TAG:
            raise self.fail(node, pointer, "YAML merge keys (<<) are not allowed in a spec", "write the keys out")
        key = self._scalar(node, pointer) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(key, (str, int, bool)) or isinstance(key, float):
            raise self.fail(node, pointer, "keys must be plain names", "write the key as text")
        text = key if isinstance(key, str) else str(key)
        if text in mapping:
            line, col = _pos(node.start_mark)
            raise SpecError(f"{self.display}:{line}:{col}: {pointer_join(pointer, _short_key(text))}: "
                            f"key {_short_key(text)!r} appears twice",
                            "keep one of the two entries")
        return text


def _short_key(key: str) -> str:
    return key if len(key) <= 60 else key[:60] + "..."


def _parse(text: str, display: str) -> tuple[Any, dict[str, tuple[int, int]]]:
    try:
        try:
            _check_events(text, display)
        except yaml.YAMLError:
            if _Loader is yaml.SafeLoader:
                raise
            # libyaml (0.2.6 on) stops deep nesting while scanning, ahead of the events that
            # carry our depth bound. PyYAML's own parser has no such limit: re-reading with it
            # gives the same error with or without libyaml (our bound, or the real syntax error).
            _check_events(text, display, yaml.SafeLoader)
            raise
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{display}:{mark.line + 1}:{mark.column + 1}" if mark else display
        line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
        tabbed = "\t" in line[:len(line) - len(line.lstrip())] or "tab" in str(exc.problem)
        raise SpecError(f"{where}: malformed YAML: {exc.problem or exc.context}",
                        "indent with spaces, not tabs (YAML does not allow tabs there)" if tabbed else
                        "fix the YAML syntax at that position (indentation, quotes, ':' after keys)") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{display}: malformed YAML: {str(exc).splitlines()[0]}", "fix the YAML syntax") from None
    values = _Values(display)
    data = values.value(root, "") if root is not None else None
    if data is None:
        raise SpecError(f"{display}:1:1: /: the file is empty", "start from specs/sample.yaml")
    values.marks.setdefault("", (1, 1))
    return data, values.marks


def load_doc(path: Path, display: str | None = None) -> Doc:
    """Parse one YAML file, keeping positions; malformed or oversized YAML raises :class:`SpecError`."""
    display = display or str(path)
    try:
        with open(path, "rb") as fp:
            raw = fp.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{display}: cannot read: {exc.strerror}", "check the path") from None
    if len(raw) > MAX_BYTES:
        raise SpecError(f"{display}: larger than {MAX_BYTES // 1024} KiB, too large for a spec",
                        "a spec is a short YAML file: start from specs/sample.yaml")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{display}: not UTF-8 text (byte {exc.start})", "save the file as UTF-8") from None
    data, marks = _parse(text, display)
    return Doc(path=path, display=display, data=data, marks=marks, sha256=hashlib.sha256(raw).hexdigest())


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


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut so that one hostile value cannot flood the one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _typename(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list",
            dict: "a mapping", type(None): "nothing (null)"}.get(type(value), type(value).__name__)


def _unknown_keys(err: jsonschema.ValidationError, pointer: str, schema: dict[str, Any],
                  hint: str | None) -> list[tuple[str, str]] | None:
    if not isinstance(err.instance, dict):
        return None
    allowed = sorted(schema.get("properties", {}))
    # ``x-misplaced``: keys valid elsewhere, with why they do not apply here.
    misplaced: dict[str, str] = schema.get("x-misplaced", {})
    out = []
    for key in sorted(set(err.instance) - set(allowed)):
        close = difflib.get_close_matches(key, allowed, n=1)
        fix = (misplaced[key] if key in misplaced else f"did you mean {close[0]!r}?" if close
               else f"allowed keys here: {', '.join(allowed)}")
        out.append((pointer_join(pointer, key) + "#key", f"unknown key {_short(key)}; fix: {fix}"))
    return out


def _missing_keys(err: jsonschema.ValidationError, pointer: str, schema: dict[str, Any],
                  hint: str | None) -> list[tuple[str, str]]:
    missing = [k for k in err.validator_value if k not in err.instance]
    return [(pointer, f"missing required key {k!r}; fix: {hint or f'add {k}: ...'}") for k in missing]


def _not_allowed(err: jsonschema.ValidationError, pointer: str, schema: dict[str, Any],
                 hint: str | None) -> list[tuple[str, str]]:
    inst, want = err.instance, err.validator_value
    if err.validator == "const" and str(inst) == str(want):
        return [(pointer, f"{_short(inst)} is text; expected the number {want}; fix: write {want} without quotes")]
    # ``x-deprecated``: accepted old names, never offered; ``x-aliases``: what other tools call a value.
    deprecated = set(schema.get("x-deprecated", ()))
    aliases: dict[str, str] = schema.get("x-aliases", {})
    allowed = [a for a in (want if err.validator == "enum" else [want]) if a not in deprecated]
    if isinstance(inst, bool) and all(isinstance(a, str) for a in allowed):
        # YAML 1.1 reads yes/no/on/off as booleans: say so, not "True is not one of ...".
        return [(pointer, f"{'yes/on/true' if inst else 'no/off/false'} is a boolean in YAML, not one of "
                          f"{', '.join(map(str, allowed))}; fix: {hint or 'write one of those words'}")]
    close = ([aliases[str(inst).lower()]] if str(inst).lower() in aliases
             else difflib.get_close_matches(str(inst), [str(a) for a in allowed], n=1))
    fix = f"did you mean {close[0]!r}?" if close else (hint or f"use one of: {', '.join(map(str, allowed))}")
    return [(pointer, f"{_short(inst)} is not one of {', '.join(map(str, allowed))}; fix: {fix}")]


def _one_of(err: jsonschema.ValidationError, pointer: str, schema: dict[str, Any],
            hint: str | None) -> list[tuple[str, str]] | None:
    needs = [", ".join(s.get("required", [])) for s in err.validator_value if s.get("required")]
    if needs:
        return [(pointer, f"needs one of: {' or '.join(needs)}; fix: {hint or 'add one of them'}")]
    forms = [_form(s) for s in err.validator_value]
    if all(forms):
        return [(pointer, f"{_short(err.instance)} is not {' nor '.join(f for f in forms if f)}; "
                          f"fix: {hint or 'write one of those'}")]
    return None


def _form(schema: dict[str, Any]) -> str | None:
    """An alternative of a oneOf in words (``auto``, ``a whole number from 34 to 130558``), when it is simple."""
    if "const" in schema:
        return repr(schema["const"]) if isinstance(schema["const"], str) else str(schema["const"])
    if schema.get("type") == "integer" and set(schema) <= {"type", "minimum", "maximum"}:
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"a whole number from {low} to {high}"
        return "a whole number" + (f" of at least {low}" if low is not None else "")
    return None


def _simple(text: Callable[[jsonschema.ValidationError, dict[str, Any]], str], default_fix: str) -> _Rule:
    def rule(err: jsonschema.ValidationError, pointer: str, schema: dict[str, Any],
             hint: str | None) -> list[tuple[str, str]]:
        return [(pointer, f"{text(err, schema)}; fix: {hint or default_fix}")]
    return rule


_Rule = Callable[[Any, str, dict[str, Any], "str | None"], "list[tuple[str, str]] | None"]

# One message per kind of schema failure, each with its fix.
_RULES: dict[str, _Rule] = {
    "additionalProperties": _unknown_keys,
    "required": _missing_keys,
    "const": _not_allowed,
    "enum": _not_allowed,
    "anyOf": _one_of,
    "oneOf": _one_of,
    "type": _simple(lambda e, s: f"expected {_describe_type(s)}, got {_typename(e.instance)}", "change the value"),
    "pattern": _simple(lambda e, s: f"{_short(e.instance)} does not match the pattern {e.validator_value!r}",
                       "change the value"),
    "maxLength": _simple(lambda e, s: f"{_short(e.instance)} is {len(e.instance)} characters long, "
                         f"more than {e.validator_value}", "shorten it"),
    "minLength": _simple(lambda e, s: "the text is empty", "write a value"),
    "maximum": _simple(lambda e, s: f"{_short(e.instance)} is more than {e.validator_value}", "use a smaller value"),
    "minimum": _simple(lambda e, s: f"{_short(e.instance)} is less than {e.validator_value}", "use a larger value"),
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
    return found if found is not None else [(pointer, f"{err.message[:200]}; fix: {hint or 'see the schema'}")]


MEMO_NAME = "valid-specs.json"
MEMO_ENTRIES = 256


def _memo_key(doc: Doc, schema_path: Path) -> str | None:
    if doc.sha256 is None:
        return None
    return f"{doc.sha256}:{hashlib.sha256(schema_path.read_bytes()).hexdigest()}"


def _memo(memo: Path | None) -> list[str]:
    if memo is None:
        return []
    try:
        data = json.loads(memo.read_bytes())
    except (OSError, ValueError):
        return []
    return [k for k in data if isinstance(k, str)] if isinstance(data, list) else []


def schema_problems(doc: Doc, schema_path: Path, memo: Path | None = None) -> list[str]:
    """Validate ``doc`` against a JSON Schema; return one positioned line per problem.

    ``memo`` remembers the (file, schema) pairs that were valid, by content: every run
    loads every spec, and jsonschema costs more to import than the rest of a no-op run.
    """
    key = _memo_key(doc, schema_path)
    known = _memo(memo)
    if key is not None and key in known:
        return []
    out = _validate(doc, schema_path)
    if not out and key is not None and memo is not None and memo.parent.is_dir():
        with contextlib.suppress(OSError):  # a cache: failing to save costs a validation, nothing else
            write_bytes_atomic(memo, json.dumps([*known, key][-MEMO_ENTRIES:]).encode())
    return out


def _validate(doc: Doc, schema_path: Path) -> list[str]:
    import jsonschema

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
    if doc.flags is not None:
        return doc.where(pointer)
    line, col = doc.marks.get(pointer, doc.marks.get(pointer[:-4], (1, 1)))
    return f"{doc.display}:{line}:{col}: {shown_pointer(pointer[:-4])}"


def raise_problems(problems: list[str]) -> None:
    """Raise one :class:`SpecError` listing every problem on its own line."""
    if problems:
        raise SpecError("\n".join(problems))
