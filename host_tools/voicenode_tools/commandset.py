"""Command sets: the spoken commands the node understands, in a TOML file the user edits
(or a .json file of the same tables).

A command set maps phrases to intents. A phrase is a small pattern language:

* ``(a|b|c)``  one of the alternatives (``(on|off)``); alternatives may be several words,
* ``[words]``  optional words (``light[s]``, ``[please]``, ``[the|my]``),
* ``{slot}``   one value of a slot declared in ``[slots.<name>]``.

Example (``commands/home.toml`` is the default set)::

    [slots.room]
    values = ["kitchen", "living room", "bedroom"]

    [slots.minutes]
    type = "number"      # spoken as words, reported as an int
    min = 1
    max = 60

    [intents."light.on"]
    phrases = ["turn on the {room} light[s]", "switch the {room} light[s] on"]

    [intents."timer.set"]
    phrases = ["set a timer for {minutes} minute[s]"]

Every phrase of one intent must use the same slots (the decoder reports exactly those).
`load(path)` parses and validates; a mistake raises `CommandSetError` whose message starts
with ``file:line:`` and names the problem (unknown slot, unbalanced bracket, empty
alternative, a phrase mapped to two intents, ...). `CommandSet.expand()` lists every sentence
with its intent and slot values; `CommandSet.layout()` is the output layout of the command
network (intent outputs then one block of outputs per slot) recorded in the model's sidecar.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

#: The intent reported when nothing in the set matches (reserved: no intent may use it).
UNKNOWN = "unknown"
_INTENT_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_SLOT_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_WORD_RE = re.compile(r"^[a-z][a-z']*$")
#: Largest number slot we can say (number words are generated here).
MAX_NUMBER = 999
#: Hard limit on the sentences one phrase may expand to (a typo like nested optionals).
MAX_EXPANSIONS = 20000

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


class CommandSetError(ValueError):
    """A command-set file cannot be used; the message is ``file:line: problem``."""


def number_words(n: int) -> str:
    """English words of 0 <= n <= 999: 25 -> "twenty five", 100 -> "one hundred"."""
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"number {n} out of range 0..{MAX_NUMBER}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        t, u = divmod(n, 10)
        return _TENS[t] + ("" if u == 0 else " " + _ONES[u])
    h, r = divmod(n, 100)
    return _ONES[h] + " hundred" + ("" if r == 0 else " and " + number_words(r))


@dataclass
class Slot:
    """A slot: its name, values as reported, and how each value is said."""

    name: str
    values: list  # str, or int for number slots
    spoken: list[str]  # one spoken form per value
    kind: str = "list"  # "list" or "number"
    line: int = 0


@dataclass
class Intent:
    name: str
    phrases: list[str]
    lines: list[int]
    slots: list[str] = field(default_factory=list)  # in first-use order
    trees: list = field(default_factory=list)  # parsed phrases


@dataclass
class CommandSet:
    """A parsed, validated command set."""

    name: str
    intents: list[Intent]
    slots: dict[str, Slot]
    path: str = ""

    @property
    def intent_names(self) -> list[str]:
        return [i.name for i in self.intents]

    def intent(self, name: str) -> Intent:
        for i in self.intents:
            if i.name == name:
                return i
        raise KeyError(name)

    def used_slots(self) -> list[str]:
        """Slots used by at least one intent, in declaration order."""
        used = {s for i in self.intents for s in i.slots}
        return [s for s in self.slots if s in used]

    def layout(self) -> dict:
        """Output layout of the command network (stored in the model sidecar).

        Returns:
            {"intents": [names], "intent_slots": {intent: [slot names]},
             "slots": [{"name", "kind", "values", "offset"}], "outputs": total}
        """
        off = len(self.intents)
        slots = []
        for s in self.used_slots():
            sl = self.slots[s]
            slots.append({"name": s, "kind": sl.kind, "values": list(sl.values), "offset": off})
            off += len(sl.values)
        return {
            "intents": self.intent_names,
            "intent_slots": {i.name: list(i.slots) for i in self.intents},
            "slots": slots,
            "outputs": off,
        }

    def expand_intent(self, intent: Intent):
        """Every sentence of one intent: yields (text, {slot: value_index})."""
        for tree in intent.trees:
            yield from _expand_with_slots(tree, self.slots)

    def expand(self):
        """Every sentence of the set: yields (text, intent name, {slot: value_index})."""
        for it in self.intents:
            for text, vals in self.expand_intent(it):
                yield text, it.name, vals

    def count(self) -> dict[str, int]:
        """Number of distinct sentences per intent."""
        return {it.name: len({t for t, _ in self.expand_intent(it)}) for it in self.intents}

    def templates(self, intent: Intent) -> list[tuple[str, list[str]]]:
        """Sentences with slot placeholders: [("turn on the {room} lights", ["room"]), ...]."""
        out = []
        for tree in intent.trees:
            for seq in _expand(tree):
                words = _words(seq)
                out.append((" ".join(words), [w[1:-1] for w in words if w.startswith("{")]))
        return out

    def fill(self, template: str, values: dict[str, int]) -> str:
        """Put spoken slot values (by index) into a template."""

        def sub(m):
            return self.slots[m.group(1)].spoken[values[m.group(1)]]

        return re.sub(r"\{([a-z0-9_]+)\}", sub, template)


# --- phrase pattern parser ------------------------------------------------------------------
# Tree: ("seq", [items]), ("alt", [seq, ...]), ("opt", alt), ("word", w), ("slot", name)


class _PhraseError(Exception):
    def __init__(self, msg: str, col: int):
        super().__init__(msg)
        self.col = col


def _tokens(text: str):
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()[]|":
            # "light[s]": a bracket stuck to the word before it is a suffix of that word.
            glued = c in "([" and i > 0 and (text[i - 1].isalpha() or text[i - 1] == "'")
            yield c, glued, i
            i += 1
        elif c == "{":
            j = text.find("}", i)
            if j < 0:
                raise _PhraseError("unbalanced '{': no closing '}'", i)
            name = text[i + 1 : j].strip()
            if not _SLOT_RE.match(name):
                raise _PhraseError(f"bad slot name {{{name}}}", i)
            yield "slot", name, i
            i = j + 1
        elif c == "}":
            raise _PhraseError("unbalanced '}': no opening '{'", i)
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "()[]|{}":
                j += 1
            word = text[i:j].lower()
            if not _WORD_RE.match(word):
                raise _PhraseError(
                    f"bad word {text[i:j]!r} (letters and apostrophes only; write numbers as words or use a number slot)",
                    i,
                )
            yield "word", word, i
            i = j


def parse_phrase(text: str):
    """Parse one phrase pattern into a tree; raises `_PhraseError` (message, column)."""
    toks = list(_tokens(text))
    pos = 0

    def seq(closer):
        nonlocal pos
        alts = [[]]
        start = toks[pos - 1][2] if pos > 0 else 0
        while pos < len(toks):
            kind, val, col = toks[pos]
            if kind in ")]":
                if kind != closer:
                    want = f"'{closer}'" if closer else "nothing"
                    raise _PhraseError(f"unbalanced brackets: '{kind}' where {want} closes", col)
                break
            pos += 1
            if kind == "|":
                if closer is None:
                    raise _PhraseError("'|' outside brackets: write (a|b) or [a|b]", col)
                if not alts[-1]:
                    raise _PhraseError("empty alternative before '|'", col)
                alts.append([])
            elif kind == "(":
                group = seq(")")
                alts[-1].append(("glue", group) if val else group)
                pos += 1
            elif kind == "[":
                group = ("opt", seq("]"))
                alts[-1].append(("glue", group) if val else group)
                pos += 1
            else:
                alts[-1].append((kind, val))
        else:
            if closer is not None:
                raise _PhraseError(
                    f"unbalanced brackets: '{'(' if closer == ')' else '['}' never closed", start
                )
        if not alts[-1]:
            where = toks[pos][2] if pos < len(toks) else len(text)
            if closer is None:
                raise _PhraseError("empty phrase", 0)
            raise _PhraseError("empty alternative" if len(alts) > 1 else "empty brackets", where)
        return ("alt", [("seq", a) for a in alts])

    tree = seq(None)
    return tree


def _expand(node):
    """All word sequences of a tree; slots stay as "{name}" tokens."""
    kind = node[0]
    if kind == "word":
        return [[node[1]]]
    if kind == "slot":
        return [["{" + node[1] + "}"]]
    if kind == "glue":  # first word of each expansion sticks to the word before
        return [[_GLUE + s[0]] + s[1:] if s else s for s in _expand(node[1])]
    if kind == "opt":
        return [[]] + _expand(node[1])
    if kind == "alt":
        out = []
        for s in node[1]:
            out += _expand(s)
        return out
    # seq
    out = [[]]
    for item in node[1]:
        out = [a + b for a in out for b in _expand(item)]
        if len(out) > MAX_EXPANSIONS:
            raise _PhraseError(f"phrase expands to more than {MAX_EXPANSIONS} sentences", 0)
    return out


_GLUE = "\x01"


def _words(seq: list[str]) -> list[str]:
    """Join glued tokens: ["light", "\x01s"] -> ["lights"]."""
    out: list[str] = []
    for w in seq:
        if w.startswith(_GLUE):
            if not out or out[-1].startswith("{") or w[1:].startswith("{"):
                raise _PhraseError("a suffix in brackets must follow a word, not a slot", 0)
            out[-1] += w[1:]
        else:
            out.append(w)
    return out


def _slots_in(node, acc):
    kind = node[0]
    if kind == "slot":
        acc.append(node[1])
    elif kind in ("opt", "glue"):
        _slots_in(node[1], acc)
    elif kind in ("alt", "seq"):
        for s in node[1]:
            _slots_in(s, acc)
    return acc


def _expand_with_slots(tree, slots):
    for seq in _expand(tree):
        seq = _words(seq)
        names = [w[1:-1] for w in seq if w.startswith("{")]
        for combo in itertools.product(*(range(len(slots[n].values)) for n in names)):
            vals = dict(zip(names, combo, strict=True))
            words = [slots[w[1:-1]].spoken[vals[w[1:-1]]] if w.startswith("{") else w for w in seq]
            yield " ".join(words), vals


# --- file loading ---------------------------------------------------------------------------


def _line_of(lines: list[str], needle: str, start: int = 0) -> int:
    """1-based line of the first quoted occurrence of ``needle`` at or after line ``start``."""
    for q in ('"', "'"):
        lit = q + needle.replace("\\", "\\\\").replace('"', '\\"') if q == '"' else q + needle
        for i in range(start, len(lines)):
            if lit + q in lines[i]:
                return i + 1
    return start + 1


def _section_line(lines: list[str], table: str, key: str) -> int:
    """0-based index of the header line of ``[table.key]`` (quoted or bare key), or of a JSON
    file's ``"key":`` inside ``"table":``, or 0."""
    pat = re.compile(
        r"^\s*\[\s*" + re.escape(table) + r"\s*\.\s*(\"|')?" + re.escape(key) + r"(\"|')?\s*\]"
    )
    for i, ln in enumerate(lines):
        if pat.match(ln):
            return i
    # JSON: the "key": inside the object that follows "table":
    top = next(
        (i for i, ln in enumerate(lines) if re.search(f'"{re.escape(table)}"\\s*:', ln)), None
    )
    if top is not None:
        member = re.compile(f'"{re.escape(key)}"\\s*:')
        for i in range(top, len(lines)):
            if member.search(lines[i]):
                return i
    for i, ln in enumerate(lines):  # inline tables / dotted keys: any line naming the key
        if key in ln:
            return i
    return 0


def _parse(text: str, path: str, fmt: str) -> dict:
    """The document of a command-set file: TOML or (``fmt`` "json") JSON."""
    import json

    import tomllib

    if fmt == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise CommandSetError(
                f"{path}:{e.lineno}: JSON syntax error: {e.msg} (column {e.colno})"
            ) from None
        if not isinstance(doc, dict):
            raise CommandSetError(
                f"{path}:1: a command set is a JSON object, not {type(doc).__name__}"
            )
        return doc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"at line (\d+)", str(e))
        line = m.group(1) if m else "?"
        hint = (
            " (this looks like JSON: name the file .json)" if text.lstrip().startswith("{") else ""
        )
        raise CommandSetError(f"{path}:{line}: TOML syntax error: {e}{hint}") from None


def loads(text: str, path: str = "<commands>", fmt: str = "toml") -> CommandSet:
    """Parse and validate a command set from TOML text, or JSON text of the same tables with
    ``fmt="json"`` (see the module docstring)."""
    doc = _parse(text, path, fmt)
    lines = text.splitlines()

    def err(line, msg):
        raise CommandSetError(f"{path}:{line}: {msg}")

    known = {"name", "slots", "intents", "version", "description"}
    for k in doc:
        if k not in known:
            err(_line_of_key(lines, k), f"unknown top-level key {k!r} (expected {sorted(known)})")
    slots: dict[str, Slot] = {}
    for sname, sdef in (doc.get("slots") or {}).items():
        sl = _section_line(lines, "slots", sname)
        line = sl + 1
        if not _SLOT_RE.match(sname):
            err(line, f"bad slot name {sname!r} (lowercase letters, digits, _)")
        if not isinstance(sdef, dict):
            err(line, f"slot {sname!r} must be a table")
        kind = sdef.get("type", "list")
        if kind == "number":
            lo, hi = sdef.get("min", 1), sdef.get("max")
            if (
                not isinstance(lo, int)
                or not isinstance(hi, int)
                or not 0 <= lo <= hi <= MAX_NUMBER
            ):
                err(line, f"number slot {sname!r} needs integers 0 <= min <= max <= {MAX_NUMBER}")
            vals = list(range(lo, hi + 1))
            slots[sname] = Slot(sname, vals, [number_words(v) for v in vals], "number", line)
        elif kind == "list":
            vals = sdef.get("values")
            if not isinstance(vals, list) or not vals:
                err(line, f"slot {sname!r} needs a non-empty list 'values'")
            seen: dict[str, int] = {}
            spoken = []
            for v in vals:
                vline = _line_of(lines, str(v), sl)
                if isinstance(v, str) and " ".join(v.lower().split()) in seen:
                    vline = _line_of(lines, str(v), seen[" ".join(v.lower().split())])
                if not isinstance(v, str):
                    err(vline, f"slot {sname!r}: value {v!r} is not a string")
                words = v.lower().split()
                if not words or not all(_WORD_RE.match(w) for w in words):
                    err(vline, f"slot {sname!r}: bad value {v!r} (words of letters only)")
                s = " ".join(words)
                if s in seen:
                    err(vline, f"slot {sname!r}: duplicate value {v!r}")
                seen[s] = vline
                spoken.append(s)
            slots[sname] = Slot(sname, spoken, list(spoken), "list", line)
        else:
            err(line, f"slot {sname!r}: unknown type {kind!r} (list or number)")
    intents: list[Intent] = []
    idefs = doc.get("intents") or {}
    if not idefs:
        err(1, 'no intents: add [intents."name"] tables with phrases')
    for iname, idef in idefs.items():
        hl = _section_line(lines, "intents", iname)
        line = hl + 1
        if not _INTENT_RE.match(iname) or iname == UNKNOWN:
            err(line, f"bad intent name {iname!r} (lowercase words joined by '.', not {UNKNOWN!r})")
        if (
            not isinstance(idef, dict)
            or not isinstance(idef.get("phrases"), list)
            or not idef["phrases"]
        ):
            err(line, f"intent {iname!r} needs a non-empty list 'phrases'")
        it = Intent(iname, [], [])
        for ph in idef["phrases"]:
            pline = _line_of(lines, ph, hl) if isinstance(ph, str) else line
            if not isinstance(ph, str):
                err(pline, f"intent {iname!r}: phrase {ph!r} is not a string")
            try:
                tree = parse_phrase(ph)
                names = _slots_in(tree, [])
                for n in names:
                    if n not in slots:
                        raise _PhraseError(
                            f"unknown slot {{{n}}} (declared: {', '.join(slots) or 'none'})",
                            ph.find("{" + n),
                        )
                for n in set(names):
                    if names.count(n) > 1:
                        raise _PhraseError(f"slot {{{n}}} used twice", ph.find("{" + n))
                for seq in _expand(tree):
                    seq = _words(seq)
                    got = sorted(w[1:-1] for w in seq if w.startswith("{"))
                    if got != sorted(set(names)):
                        raise _PhraseError(
                            "a slot inside (..|..) or [..] is missing from some sentences: "
                            "every sentence must carry the same slots",
                            0,
                        )
            except _PhraseError as e:
                err(pline, f'intent {iname!r}: phrase "{ph}": {e} (column {e.col + 1})')
            if it.phrases and sorted(names) != sorted(it.slots):
                err(
                    pline,
                    f"intent {iname!r}: phrase uses slots {sorted(names)} but the intent's "
                    f"first phrase uses {sorted(it.slots)} (all phrases of an intent need the same slots)",
                )
            if not it.phrases:
                it.slots = list(dict.fromkeys(names))
            it.phrases.append(ph)
            it.lines.append(pline)
            it.trees.append(tree)
        intents.append(it)
    cs = CommandSet(str(doc.get("name") or Path(path).stem), intents, slots, path)
    # The same sentence may not mean two things.
    seen: dict[str, tuple[str, dict, int]] = {}
    for it in intents:
        for tree, pline in zip(it.trees, it.lines, strict=True):
            for text_, vals in _expand_with_slots(tree, slots):
                prev = seen.get(text_)
                if prev is None:
                    seen[text_] = (it.name, vals, pline)
                elif prev[0] != it.name or prev[1] != vals:
                    what = f"intent {prev[0]!r}" if prev[0] != it.name else "other slot values"
                    err(
                        pline,
                        f'duplicate phrase: "{text_}" is mapped to intent {it.name!r} here '
                        f"and to {what} on line {prev[2]}",
                    )
    return cs


def _line_of_key(lines: list[str], key: str) -> int:
    for i, ln in enumerate(lines):  # a TOML key or [table], or a JSON "key":
        if re.match(r"^\s*(\[?\s*" + re.escape(key) + r"\b|\{?\s*\"" + re.escape(key) + '")', ln):
            return i + 1
    return 1


def load(path) -> CommandSet:
    """Parse and validate a command-set file: TOML, or JSON when its name ends in .json.

    Raises:
        CommandSetError: ``file:line: problem`` (a YAML file is refused with what to do).
        OSError: the file cannot be read.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".yaml", ".yml"):
        raise CommandSetError(
            f"{p}:1: YAML is not read here: write the same tables as TOML (like"
            " commands/home.toml) or as JSON (a .json file)"
        )
    return loads(p.read_text(encoding="utf-8"), str(p), "json" if suffix == ".json" else "toml")


def default_path() -> Path:
    """The shipped home command set (commands/home.toml at the repository root)."""
    from voicenode_tools import REPO_ROOT

    return Path(REPO_ROOT) / "commands" / "home.toml"


def jsgf(cs: CommandSet, name: str = "commands") -> str:
    """The same command set as a JSGF grammar (for PocketSphinx in `bench commands`).

    Each intent is one rule listing its sentences (slots as rules), so the grammar accepts
    exactly the sentences of `CommandSet.expand`.
    """
    out = ["#JSGF V1.0;", f"grammar {name};"]
    alts = []
    for k, it in enumerate(cs.intents):
        rule = f"intent{k}"
        sents = dict.fromkeys(
            re.sub(r"\{([a-z0-9_]+)\}", r"<slot_\1>", t) for t, _ in cs.templates(it)
        )
        out.append(f"<{rule}> = " + " | ".join(sents) + ";")
        alts.append(f"<{rule}>")
    for s in cs.used_slots():
        out.append(f"<slot_{s}> = " + " | ".join(f"({v})" for v in cs.slots[s].spoken) + ";")
    out.append("public <command> = " + " | ".join(alts) + ";")
    return "\n".join(out) + "\n"
