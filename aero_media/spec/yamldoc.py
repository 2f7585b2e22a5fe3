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
# specs/ (an alias bomb, a million nested brackets) from hanging every command.
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 20_000
MAX_NUMBER_CHARS = 40
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}
_COLLECTION_TAGS = {"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}
_EventParser: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class _Open:
    """A mapping or sequence whose end event has not come yet."""

    value: dict[str, Any] | list[Any]
    pointer: str
    anchor: str | None
    nodes: int = 1
    key: str | None = None


class _Builder:
    """Turn a YAML event stream into plain values, iteratively and within the bounds above.

    YAML's own composer recurses (a C stack overflow on deep input) and expands
    aliases without limit, so the document is built here from parser events.
    """

    def __init__(self, display: str) -> None:
        self.display = display
        self.marks: dict[str, tuple[int, int]] = {}
        self.stack: list[_Open] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.nodes = 0
        self.root: Any = None
        self.documents = 0
        self.resolver = yaml.resolver.Resolver()
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, event: yaml.Event, what: str, fix: str) -> SpecError:
        line, col = _pos(event)
        return SpecError(f"{self.display}:{line}:{col}: {self._pointer_here()}: {what}", fix)

    def _pointer_here(self) -> str:
        if not self.stack:
            return "/"
        top = self.stack[-1]
        if isinstance(top.value, list):
            return pointer_join(top.pointer, len(top.value))
        return pointer_join(top.pointer, top.key) if top.key is not None else (top.pointer or "/")

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise self.fail(event, "the file holds more than one YAML document",
                                "keep one document per file (remove the extra '---')")
        elif isinstance(event, yaml.ScalarEvent):
            self._check_tag(event, _PLAIN_TAGS)
            self._place(event, self._scalar(event), 1, event.anchor)
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            self._start(event)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            done = self.stack.pop()
            if done.anchor is not None:
                self.anchors[done.anchor] = (done.value, done.nodes)
            self._place(event, done.value, done.nodes, None, counted=True)

    def _check_tag(self, event: yaml.NodeEvent, allowed: set[str]) -> None:
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in allowed:
            raise self.fail(event, f"the YAML tag {tag} is not allowed in a spec",
                            "remove the tag and write a plain value")

    def _scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag in (None, "!"):
            tag = self.resolver.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
        if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") and len(event.value) > MAX_NUMBER_CHARS:
            raise self.fail(event, f"a number of {len(event.value)} characters",
                            "quote it: a sha256 of only digits reads as a number in YAML" if len(event.value) == 64
                            else "write a realistic number, or quote it to make it text")
        if tag not in _PLAIN_TAGS:
            # A YAML 1.1 timestamp or the like: keep the text the author wrote.
            return event.value
        node = yaml.ScalarNode(tag, event.value, style=event.style)
        try:
            return self.constructor.construct_object(node)
        except (ValueError, yaml.YAMLError) as exc:
            raise self.fail(event, f"cannot read {event.value[:40]!r} as {tag.rsplit(':', 1)[1]} ({exc})",
                            "quote the value to make it text") from None

    def _alias(self, event: yaml.AliasEvent) -> None:
        name = event.anchor
        if any(o.anchor == name for o in self.stack):
            raise self.fail(event, f"the alias *{name} refers to itself",
                            "replace the recursive alias with plain values")
        if name not in self.anchors:
            raise self.fail(event, f"the alias *{name} has no anchor &{name} before it",
                            f"define &{name} first, or write the value out")
        value, nodes = self.anchors[name]
        self._place(event, value, nodes, None)

    def _start(self, event: yaml.CollectionStartEvent) -> None:
        self._check_tag(event, _COLLECTION_TAGS)
        if self.stack and isinstance(self.stack[-1].value, dict) and self.stack[-1].key is None:
            raise self.fail(event, "keys must be plain names", "write the key as text")
        if len(self.stack) >= MAX_DEPTH:
            raise self.fail(event, f"nested more than {MAX_DEPTH} levels deep",
                            "flatten the structure: a spec needs only a few levels")
        pointer = self._pointer_here() if self.stack else ""
        self.marks[pointer] = _pos(event)
        value: dict[str, Any] | list[Any] = {} if isinstance(event, yaml.MappingStartEvent) else []
        self.stack.append(_Open(value, pointer, event.anchor))

    def _place(self, event: yaml.Event, value: Any, nodes: int, anchor: str | None, counted: bool = False) -> None:
        if not counted:
            self.nodes += nodes
            if self.nodes > MAX_NODES:
                raise self.fail(event, f"the document expands to more than {MAX_NODES} values",
                                "remove the aliases that multiply the document (a YAML alias bomb?)")
        if anchor is not None:
            self.anchors[anchor] = (value, nodes)
        mark = _pos(event)
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        top.nodes += nodes
        if isinstance(top.value, list):
            if not counted:
                self.marks[pointer_join(top.pointer, len(top.value))] = mark
            top.value.append(value)
        elif top.key is None:
            top.key = self._key(event, value, top)
            self.marks[pointer_join(top.pointer, top.key) + "#key"] = mark
        else:
            if not counted:
                self.marks[pointer_join(top.pointer, top.key)] = mark
            top.value[top.key] = value
            top.key = None

    def _key(self, event: yaml.Event, key: Any, top: _Open) -> str:
        if isinstance(event, yaml.ScalarEvent) and event.value == "<<" and event.implicit[0]:
            raise self.fail(event, "YAML merge keys (<<) are not allowed in a spec", "write the keys out")
        if not isinstance(key, (str, int, bool)) or isinstance(key, float):
            raise self.fail(event, "keys must be plain names", "write the key as text")
        text = key if isinstance(key, str) else str(key)
        if text in top.value:
            line, col = _pos(event)
            raise SpecError(f"{self.display}:{line}:{col}: {pointer_join(top.pointer, _short_key(text))}: "
                            f"key {_short_key(text)!r} appears twice",
                            "keep one of the two entries")
        return text


def _pos(event: yaml.Event) -> tuple[int, int]:
    mark = event.start_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _short_key(key: str) -> str:
    return key if len(key) <= 60 else key[:60] + "..."


def _parse(text: str, display: str) -> tuple[Any, dict[str, tuple[int, int]]]:
    builder = _Builder(display)
    try:
        for event in yaml.parse(text, Loader=_EventParser):
            builder.feed(event)
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
    if builder.documents == 0 or (builder.root is None and not builder.marks):
        raise SpecError(f"{display}:1:1: /: the file is empty", "start from specs/sample.yaml")
    builder.marks.setdefault("", (1, 1))
    return builder.root, builder.marks


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
