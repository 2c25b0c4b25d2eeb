#!/usr/bin/env python3
"""Rebuild ``embbench/data/corpus.txt`` from the Python documentation sources.

The corpus is plain English prose taken from the reStructuredText sources of the
Python 3.11 documentation as shipped by Debian (``apt-get install python3-doc``,
which pulls in ``python3.11-doc``).  The documentation is licensed under the PSF
License Agreement; see ``embbench/data/CORPUS.md``.

Only running prose is kept: headings, directives, comments, tables, literal
(code) blocks, interactive sessions, field lists and URLs are dropped, inline
markup is reduced to its text, and the paragraphs are split into sentences.
A sentence is kept when it reads as plain English: 5 to 60 words, starts with a
capital letter, ends with ``.``, ``!`` or ``?``, and has few code-like words.

Output format (UTF-8): a few ``#`` header lines, then one block per source
document: a ``# doc: <path>`` line followed by that document's sentences, one
per line, in document order (so consecutive lines can be joined into longer
passages).  Blank lines separate documents.

Usage::

    apt-get install -y python3-doc
    python3 scripts/build_corpus.py            # writes embbench/data/corpus.txt
    python3 scripts/build_corpus.py --check    # only prints statistics

Deterministic: the same installed package gives a byte-identical file.
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from pathlib import Path

SOURCE_ROOT = Path("/usr/share/doc/python3.11/html/_sources")
PACKAGE = "python3.11-doc"
# Prose-heavy parts of the documentation, in this order.
SOURCE_GLOBS = ("tutorial/*.rst.txt", "faq/*.rst.txt", "howto/*.rst.txt")
# Documents that are mostly tables of contents, generated lists or C code.
EXCLUDE = {
    "tutorial/index.rst.txt",
    "faq/index.rst.txt",
    "howto/index.rst.txt",
    "howto/clinic.rst.txt",
    "howto/instrumentation.rst.txt",
}
OUT = Path(__file__).resolve().parent.parent / "embbench" / "data" / "corpus.txt"

MIN_WORDS = 5
MAX_WORDS = 60

_UNDERLINE = re.compile(r"^([=\-~^*+#\"'`:.])\1{2,}\s*$")
_TABLE = re.compile(r"^\s*(\+[-=+]+\+|=+(\s+=+)+)\s*$")
_BULLET = re.compile(r"^(\s*)([*+\-]|#\.|\d+\.|\(\d+\)|[a-z]\.)\s+")
_ROLE = re.compile(r":[a-zA-Z]+(?::[a-zA-Z]+)?:`([^`]*)`")
_LINK_WITH_TARGET = re.compile(r"`([^`<]+?)\s*<[^`>]*>`__?")
_LINK_PLAIN = re.compile(r"`([^`]+)`__?")
_LITERAL = re.compile(r"``(.+?)``")
_STRONG = re.compile(r"\*\*([^*]+)\*\*")
_EMPH = re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])")
_FOOTNOTE = re.compile(r"\s*\[(#[\w-]*|\*|\d+)\]_")
_REF_WORD = re.compile(r"(?<![^\s(])([A-Za-z][A-Za-z0-9.-]*[A-Za-z0-9])__?(?=[\s.,;:)]|$)")
_URL = re.compile(r"(://|www\.|mailto:|@\w+\.\w)")
_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z])")
_NO_SPLIT_AFTER = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "Mr.", "Dr.", "St.", "approx.", "No.")
_CODEY = re.compile(r"[_(){}\[\]=<>/\\|@$%^~]|\w\.\w|^\d+\w|::|->|\.\.\.")


def _role_text(match: re.Match[str]) -> str:
    """Text of an interpreted-text role such as :func:`~os.path.join`."""
    body = match.group(1)
    explicit = re.match(r"^(.*?)\s*<[^<>]*>$", body, flags=re.S)
    if explicit and explicit.group(1).strip():
        return explicit.group(1).strip()
    body = body.lstrip("!")
    if body.startswith("~"):
        body = body[1:].rsplit(".", 1)[-1]
    if re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", body):
        # A bare cross-reference label (e.g. :ref:`tut-morecontrol`): its title
        # is not in this file, so mark the sentence for rejection.
        return "\x00"
    return body


def clean_inline(text: str) -> str:
    """Reduce reST inline markup to plain text."""
    text = _FOOTNOTE.sub("", text)
    text = _REF_WORD.sub(lambda m: m.group(1), text)
    text = _ROLE.sub(_role_text, text)
    text = _LINK_WITH_TARGET.sub(lambda m: m.group(1), text)
    text = _LITERAL.sub(lambda m: m.group(1), text)
    text = _LINK_PLAIN.sub(lambda m: m.group(1), text)
    text = _STRONG.sub(lambda m: m.group(1), text)
    text = _EMPH.sub(lambda m: m.group(1), text)
    text = text.replace("\\ ", "").replace("\\", "")
    text = unicodedata.normalize("NFC", text)
    return re.sub(r"\s+", " ", text).strip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def paragraphs(lines: list[str]) -> list[str]:
    """Prose paragraphs of one reST document, in order, markup still inline."""
    out: list[str] = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i].rstrip("\n").expandtabs(8)
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        ind = _indent(line)
        # Directive, comment, target or substitution definition: skip the
        # explicit-markup block (its first line and everything indented deeper).
        if stripped.startswith(".."):
            i += 1
            while i < n and (not lines[i].strip() or _indent(lines[i].expandtabs(8)) > ind):
                i += 1
            continue
        # Doctest sessions and field lists.
        if stripped.startswith((">>>", "...", ":")) or stripped == "::":
            literal = stripped == "::"
            i += 1
            while i < n and lines[i].strip():
                i += 1
            if literal:
                i = _skip_literal(lines, i, ind)
            continue
        # Tables and section adornments.
        if _TABLE.match(line) or _UNDERLINE.match(stripped):
            i += 1
            while i < n and lines[i].strip():
                i += 1
            continue
        # Collect a paragraph: consecutive non-blank lines at the same indent
        # (a list marker starts a new paragraph).
        block = [stripped]
        j = i + 1
        while j < n:
            nxt = lines[j].rstrip("\n").expandtabs(8)
            if not nxt.strip() or _BULLET.match(nxt):
                break
            block.append(nxt.strip())
            j += 1
        # A section title is a one-line paragraph followed by an underline.
        if len(block) >= 2 and _UNDERLINE.match(block[1]):
            i = i + 2
            continue
        if any(_UNDERLINE.match(b) or _TABLE.match(b) for b in block):
            i = j
            continue
        text = " ".join(block)
        text = _BULLET.sub("", text, count=1) if _BULLET.match(line) else text
        literal_follows = text.endswith("::")
        if literal_follows:
            # "Text::" introduces a code block; "Text ::" drops the colons.
            text = text[:-2].rstrip()
            text = text if text.endswith((":", " ")) else text + ":"
        if not (line.lstrip().startswith(("|", "-- ")) or ind >= 8):
            out.append(text)
        i = j
        if literal_follows:
            i = _skip_literal(lines, i, ind)
    return out


def _skip_literal(lines: list[str], i: int, ind: int) -> int:
    """Skip the indented literal block starting at or after line ``i``."""
    n = len(lines)
    while i < n and not lines[i].strip():
        i += 1
    while i < n and (not lines[i].strip() or _indent(lines[i].expandtabs(8)) > ind):
        i += 1
    return i


def split_sentences(paragraph: str) -> list[str]:
    parts = _SENT_SPLIT.split(paragraph)
    merged: list[str] = []
    for part in parts:
        if merged and merged[-1].endswith(_NO_SPLIT_AFTER):
            merged[-1] = merged[-1] + " " + part
        else:
            merged.append(part)
    return [p.strip() for p in merged if p.strip()]


def is_prose(sentence: str) -> bool:
    if "\x00" in sentence or _URL.search(sentence):
        return False
    if not re.match(r"^[\"'(]?[A-Z]", sentence) or not sentence.endswith((".", "!", "?")):
        return False
    if sentence.endswith(("e.g.", "i.e.", ":.", "...")):
        return False
    if any(ch in sentence for ch in "`*|{}\t") or ">>>" in sentence:
        return False
    if re.search(r"[^\x00-\x7f\u00a0-\u024f\u2018-\u201f\u2013\u2014\u2026]", sentence):
        return False
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    codey = sum(1 for w in words if _CODEY.search(w.strip(".,;:!?\"'")))
    if codey > 2 or codey > len(words) // 8:
        return False
    alpha = sum(1 for w in words if re.fullmatch(r"[\"'(]*[A-Za-z][A-Za-z'’\-]*[.,;:!?\"')]*", w))
    if alpha < 0.85 * len(words):
        return False
    return sentence.count("(") == sentence.count(")") and sentence.count('"') % 2 == 0


def build(root: Path) -> list[tuple[str, list[str]]]:
    docs: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for pattern in SOURCE_GLOBS:
        for path in sorted(root.glob(pattern)):
            rel = path.relative_to(root).as_posix()
            if rel in EXCLUDE:
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
            sentences: list[str] = []
            for para in paragraphs(lines):
                for sent in split_sentences(clean_inline(para)):
                    if is_prose(sent) and sent not in seen:
                        seen.add(sent)
                        sentences.append(sent)
            if sentences:
                docs.append((rel, sentences))
    return docs


def render(docs: list[tuple[str, list[str]]]) -> str:
    header = [
        "# embbench English sentence corpus: prose sentences from the Python 3.11",
        f"# documentation sources (Debian package {PACKAGE}, {SOURCE_ROOT}).",
        "# Copyright (c) 2001-2023 Python Software Foundation; All Rights Reserved.",
        "# Licensed under the PSF License Agreement (PSF-2.0). See embbench/data/CORPUS.md.",
        "# Format: '# doc: <path>' starts a document; then one sentence per line, in order.",
        "# Regenerate with: python3 scripts/build_corpus.py",
    ]
    chunks = ["\n".join(header)]
    for rel, sentences in docs:
        chunks.append("\n".join([f"# doc: {rel}", *sentences]))
    return "\n\n".join(chunks) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE_ROOT)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="print statistics only")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        print(f"{args.source} not found: apt-get install -y python3-doc", file=sys.stderr)
        return 1
    docs = build(args.source)
    text = render(docs)
    total = sum(len(s) for _, s in docs)
    words = sum(len(x.split()) for _, s in docs for x in s)
    print(f"{len(docs)} documents, {total} sentences, {words} words, {len(text.encode())} bytes")
    if not args.check:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
