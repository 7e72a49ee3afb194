"""The captions file of an import: (image, caption) pairs, with every bad line counted, not fatal.

Two forms are read (chosen by the file's suffix; any other suffix by its first line):

* CSV (``.csv``; ``.tsv`` or a tab-separated header for tabs): a header line naming the columns
  ``image`` and ``caption`` (any case, surrounding spaces ignored) and any further columns, which are
  labelled attributes of the image;
* JSON lines (``.jsonl``, ``.json``, ``.ndjson``, or a first line that starts with ``{``): one object
  per line with the keys ``image`` and ``caption``; further keys are attributes.

The file is read as bytes and decoded line by line, so that one line that is not UTF-8 costs that
line only. Each kind of bad input is counted under its key in :class:`Skipped` (the first few cases
kept as examples: a file name or a line number) and the good pairs are kept:

* ``not_utf8``: a line that is not valid UTF-8 (dropped before it is parsed);
* ``bad_row``: a CSV row with another number of cells than the header, a JSON line that does not
  parse, is not an object, or lacks a text ``image`` or ``caption``;
* ``unknown_column``: a CSV header cell that is empty or repeats an earlier column's name (the column
  is ignored), a JSON key that is empty or repeats another in other case;
* ``empty_caption``: a caption without a word (blank, or punctuation only);
* ``duplicate_pair``: an image listed again with the same caption (the same words after
  :func:`~vlvae.data.vocabulary.tokenize`); the later line is dropped;
* ``missing_image``, ``empty_image``, ``unreadable_image``: found by :func:`drop_unusable_files`
  (a file's status, before any decoding); ``truncated_image`` and the rest of ``unreadable_image``
  are found while the images are decoded (:mod:`vlvae.datasets.captions.images`).

Fatal (a :class:`~vlvae.errors.VLVAEError`): the file is missing or empty, or a CSV's first line is not
a header naming ``image`` and ``caption``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vlvae.data.vocabulary import tokenize
from vlvae.datasets.captions.images import ImageProblem, check_file
from vlvae.errors import VLVAEError

__all__ = [
    "SKIP_KINDS",
    "MAX_EXAMPLES",
    "Skipped",
    "Pair",
    "CaptionTable",
    "read_captions",
    "drop_unusable_files",
    "has_word",
]

#: Every kind of bad input, in the order they are reported.
SKIP_KINDS = (
    "missing_image",
    "empty_image",
    "unreadable_image",
    "truncated_image",
    "empty_caption",
    "duplicate_pair",
    "bad_row",
    "not_utf8",
    "unknown_column",
)
#: Examples kept per kind.
MAX_EXAMPLES = 5

_NOUNS = {
    "missing_image": ("missing image", "missing images"),
    "empty_image": ("empty image file", "empty image files"),
    "unreadable_image": ("unreadable image", "unreadable images"),
    "truncated_image": ("truncated image", "truncated images"),
    "empty_caption": ("empty caption", "empty captions"),
    "duplicate_pair": ("duplicate pair", "duplicate pairs"),
    "bad_row": ("malformed row", "malformed rows"),
    "not_utf8": ("line not in UTF-8", "lines not in UTF-8"),
    "unknown_column": ("ignored column", "ignored columns"),
}
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


class Skipped:
    """Counts and first examples of each kind of bad input (:data:`SKIP_KINDS`).

    Example:
        >>> s = Skipped()
        >>> s.add("empty_caption", 7); s.add("empty_caption", 9); s.add("missing_image", "a.png")
        >>> s.describe()
        '1 missing image (a.png), 2 empty captions (line 7, 9)'
    """

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list] = {}

    def add(self, kind: str, example: str | int) -> None:
        if kind not in _NOUNS:
            raise ValueError(f"unknown kind of bad input {kind!r}")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(example)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def to_json(self) -> dict:
        """``{kind: {"count": n, "examples": [...]}}`` for each kind that occurred."""
        return {
            k: {"count": self.counts[k], "examples": list(self.examples[k])}
            for k in SKIP_KINDS
            if k in self.counts
        }

    def describe(self) -> str:
        """One phrase per kind, e.g. ``2 missing images (a.png, b.png), 5 empty captions (line 7, 9, …)``."""
        parts = []
        for kind in SKIP_KINDS:
            n = self.counts.get(kind)
            if not n:
                continue
            examples = self.examples[kind]
            shown = ", ".join(str(e) for e in examples)
            if examples and all(isinstance(e, int) for e in examples):
                shown = "line " + shown
            if n > len(examples):
                shown += ", …"
            parts.append(f"{n} {_NOUNS[kind][n != 1]} ({shown})")
        return ", ".join(parts)


@dataclass(slots=True)
class Pair:
    """One good (image, caption) line.

    Attributes:
        image: the image's name as the captions file writes it (surrounding spaces removed).
        key: the image's normalised absolute path: the image's identity.
        tokens: the caption's words (:func:`~vlvae.data.vocabulary.tokenize`), uncut.
        line: the line of the captions file it starts on.
    """

    image: str
    key: str
    tokens: tuple[str, ...]
    line: int


@dataclass
class CaptionTable:
    """The pairs of a captions file and what was skipped.

    Attributes:
        path: the captions file.
        form: ``csv`` or ``jsonl``.
        attributes: the attribute column names, in the file's order.
        pairs: the good pairs, in file order.
        image_attributes: image key -> {column: value} of the first good pair listing it.
        rows: data rows read, good or bad (blank lines and the header not counted).
        skipped: the bad input met so far.
    """

    path: Path
    form: str
    attributes: list[str] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    image_attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    rows: int = 0
    skipped: Skipped = field(default_factory=Skipped)

    def images(self) -> list[str]:
        """The keys of the images of the pairs, each once, in order of first appearance."""
        return list(dict.fromkeys(p.key for p in self.pairs))

    def drop_images(self, kinds: dict[str, str]) -> None:
        """Drop the pairs of the images ``kinds`` names (key -> kind of problem), counting each image
        once under its kind, with the name it is first written with."""
        if not kinds:
            return
        counted = set()
        for p in self.pairs:
            if p.key in kinds and p.key not in counted:
                counted.add(p.key)
                self.skipped.add(kinds[p.key], p.image)
        self.pairs = [p for p in self.pairs if p.key not in kinds]
        for key in kinds:
            self.image_attributes.pop(key, None)


def has_word(tokens) -> bool:
    """Whether some token is a word (holds a letter or digit), not punctuation only."""
    return any(ch.isalnum() for t in tokens for ch in t)


def _lines(path: Path, skipped: Skipped) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line that is valid UTF-8; the others are counted and dropped."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped.add("not_utf8", number)
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")
            yield number, text


class _Feed:
    """The lines handed to :func:`csv.reader`, remembering the numbers of those of the current row."""

    def __init__(self, lines: Iterator[tuple[int, str]]):
        self.lines = lines
        self.taken: list[int] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        number, text = next(self.lines)
        self.taken.append(number)
        return text


class _Builder:
    """Adds lines to a table: the checks shared by both forms."""

    def __init__(self, table: CaptionTable, base: str):
        self.table, self.base = table, base
        self.seen: set[tuple[str, tuple[str, ...]]] = set()

    def add(self, line: int, image, caption, attributes: dict[str, str]) -> None:
        table = self.table
        table.rows += 1
        if not isinstance(image, str) or not image.strip() or not isinstance(caption, str):
            table.skipped.add("bad_row", line)
            return
        name = image.strip()
        tokens = tuple(sys.intern(t) for t in tokenize(caption))
        if not has_word(tokens):
            table.skipped.add("empty_caption", line)
            return
        key = os.path.normpath(os.path.join(self.base, name))
        if (key, tokens) in self.seen:
            table.skipped.add("duplicate_pair", line)
            return
        self.seen.add((key, tokens))
        table.pairs.append(Pair(name, key, tokens, line))
        table.image_attributes.setdefault(key, attributes)


def _first_line(path: Path) -> str:
    """The first non-blank line that decodes, for telling the file's form."""
    with open(path, "rb") as f:
        for raw in f:
            text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff").strip()
            if text:
                return text
    return ""


def _read_csv(table: CaptionTable, lines: Iterator[tuple[int, str]], builder: _Builder, tabs: bool) -> None:
    feed = _Feed(lines)
    reader = csv.reader(feed, delimiter="\t" if tabs else ",")
    header = None
    columns: list[tuple[str, int]] = []
    image_i = caption_i = -1
    while True:
        feed.taken = []
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            if header is None:
                raise VLVAEError(
                    f"{table.path}'s first line is not a CSV header; the first line must be a header "
                    "naming the columns image,caption"
                ) from None
            table.rows += 1
            table.skipped.add("bad_row", feed.taken[0] if feed.taken else 0)
            continue
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        line = feed.taken[0]
        if header is None:
            header = [cell.strip() for cell in row]
            seen: dict[str, int] = {}
            for i, name in enumerate(header):
                if not name:
                    table.skipped.add("unknown_column", f"column {i + 1}: empty")
                elif name.lower() in seen:
                    table.skipped.add("unknown_column", f"column {i + 1}: {name!r} again")
                else:
                    seen[name.lower()] = i
            if "image" not in seen or "caption" not in seen:
                found = ", ".join(repr(h) for h in header) or "none"
                raise VLVAEError(
                    f"{table.path} has the columns {found} on its first line; the first line must be a "
                    "header naming the columns image,caption (then any attribute columns)"
                )
            image_i, caption_i = seen["image"], seen["caption"]
            columns = [(header[i], i) for i in seen.values() if i not in (image_i, caption_i)]
            table.attributes = [name for name, _ in columns]
            continue
        if len(row) != len(header):
            table.rows += 1
            table.skipped.add("bad_row", line)
            continue
        builder.add(line, row[image_i], row[caption_i], {name: row[i].strip() for name, i in columns})
    if header is None:
        raise VLVAEError(
            f"{table.path} has no header line; the first line must be a header naming the columns "
            "image,caption"
        )


def _text(value) -> str:
    if isinstance(value, str):
        return value.strip()
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _read_jsonl(table: CaptionTable, lines: Iterator[tuple[int, str]], builder: _Builder) -> None:
    columns: dict[str, None] = {}
    reported: set[str] = set()
    for number, text in lines:
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            table.rows += 1
            table.skipped.add("bad_row", number)
            continue
        fields: dict[str, tuple[str, object]] = {}
        for key, value in obj.items():
            name = key.strip()
            if not name or name.lower() in fields:
                if key not in reported:
                    reported.add(key)
                    table.skipped.add("unknown_column", f"key {key!r} (line {number})")
                continue
            fields[name.lower()] = (name, value)
        if "image" not in fields or "caption" not in fields:
            table.rows += 1
            table.skipped.add("bad_row", number)
            continue
        attributes = {}
        for lower, (name, value) in fields.items():
            if lower not in ("image", "caption"):
                columns.setdefault(name)
                attributes[name] = _text(value)
        builder.add(number, fields["image"][1], fields["caption"][1], attributes)
    # every image gets every column; a line without a key has the empty value there
    table.attributes = list(columns)
    table.image_attributes = {
        key: {c: values.get(c, "") for c in table.attributes}
        for key, values in table.image_attributes.items()
    }


def read_captions(path: Path, images: Path) -> CaptionTable:
    """Read a captions file into its good pairs (see the module's docstring for the forms and checks).

    Args:
        path: the captions file.
        images: the folder that image names are relative to (absolute names are kept as they are).

    Raises:
        VLVAEError: the file is missing or empty, or a CSV lacks its ``image,caption`` header.
    """
    path = Path(path)
    if not path.is_file():
        raise VLVAEError(f"captions file {path} does not exist; pass the CSV or JSON-lines file of captions")
    first = _first_line(path)
    if not first:
        raise VLVAEError(
            f"captions file {path} is empty; write a header line image,caption and then one line per "
            "image and caption"
        )
    suffix = path.suffix.lower()
    json_lines = suffix in _JSON_SUFFIXES or (suffix not in (".csv", ".tsv") and first.startswith("{"))
    if json_lines and first.startswith("["):
        raise VLVAEError(
            f"{path} holds one JSON array; write JSON lines instead (one object with image and caption "
            "per line)"
        )
    table = CaptionTable(path=path, form="jsonl" if json_lines else "csv")
    builder = _Builder(table, os.path.abspath(images))
    lines = _lines(path, table.skipped)
    if json_lines:
        _read_jsonl(table, lines, builder)
    else:
        tabs = suffix == ".tsv" or ("\t" in first and "," not in first)
        _read_csv(table, lines, builder, tabs)
    table.rows += table.skipped.counts.get("not_utf8", 0)
    return table


def drop_unusable_files(table: CaptionTable) -> dict[str, os.stat_result]:
    """Check the status of every listed image file (no decoding) and drop the pairs of those that are
    missing, empty or not regular files, counting each such image once.

    Returns:
        image key -> its file's status, for the images kept.
    """
    status: dict[str, os.stat_result] = {}
    bad: dict[str, str] = {}
    for key in table.images():
        try:
            status[key] = check_file(Path(key))
        except ImageProblem as exc:
            bad[key] = exc.kind
    table.drop_images(bad)
    return status
