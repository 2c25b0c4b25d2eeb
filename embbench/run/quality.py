"""Correctness under load: the answers a server gave inside the measured window, each against
sentence-transformers' embedding of the very input it was sent.

A probe before the load (probe.py) asks a few inputs one at a time on an idle server; it cannot
see a batcher that hands one request another request's vector, nor what int8 costs on the run's
long inputs. So each Locust process keeps a sample of raw 200 response bodies with the index of
their input (`responses-<pid>.bin` beside its request log, written by the locustfile without any
numpy in its hot path), and after the cell this module parses them, compares each with the
reference embedding of its input and of every other input of the payload set, and summarises
(how many answers are kept per second: RunConfig.check_rate, `--check-rate`):

- `cosine` of each answer to its own input's reference (the distribution is the quality cost);
- `mismatched`: answers closer to another input's reference than to their own. Inputs whose
  references the cell's threshold cannot tell apart (the same text after truncation, say) count
  as the same input: noise may legitimately put an answer nearer its twin.

References are computed once per (model, max_seq_length, payload texts) and kept on disk under
`${EMBBENCH_CACHE:-~/.cache/embbench}/references/`, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embbench.config.model import read_spec
from embbench.errors import EmbbenchError
from embbench.load.answers import Kept
from embbench.load.protocols import parse_embeddings
from embbench.machine.cache import cache_root
from embbench.machine.files import write_atomically

Vectors = npt.NDArray[np.float32]

# Probe inputs: the payload's shortest, these quantiles of length, and its longest.
PROBE_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


# -- references -------------------------------------------------------------------------------


def model_identity(model_path: str) -> str:
    """The model folder's path and the name, size and mtime of each of its files: a model
    replaced in place gets new references; a hub id (no folder here) is its own identity."""
    path = Path(model_path)
    if not path.is_dir():
        return model_path
    files = sorted(p for p in path.rglob("*") if p.is_file())
    parts = [str(path.resolve())]
    for each in files:
        stat = each.stat()
        parts.append(f"{each.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return "\n".join(parts)


def reference_key(model_path: str, texts: Sequence[str], max_seq_length: int | None) -> str:
    digest = hashlib.sha256()
    digest.update(model_identity(model_path).encode())
    digest.update(f"\0max_seq_length={max_seq_length}\0".encode())
    digest.update(json.dumps(list(texts)).encode())  # unambiguous where a join would not be
    return digest.hexdigest()[:32]


Compute = Callable[[str, tuple[str, ...], int | None], Vectors]

_memo: dict[str, Vectors] = {}


def references(
    model_path: str,
    texts: Sequence[str],
    max_seq_length: int | None = None,
    *,
    compute: Compute | None = None,
    root: Path | None = None,
) -> Vectors:
    """sentence-transformers' embedding of each text, from this process's memory, the disk
    cache, or computed (then cached). `compute` is probe.reference_embeddings unless given.

    sentence-transformers applies the model's default prompt itself, as the servers do. The
    truncation length is always the one the servers use (the ModelSpec's, or `max_seq_length`
    capped at the model's positions): sentence-transformers' own may exceed what the model can
    embed (XLM-R: 514 positions, 512 tokens) and fail on a long input.
    """
    max_seq_length = served_length(model_path, max_seq_length)
    key = reference_key(model_path, texts, max_seq_length)
    if key in _memo:
        return _memo[key]
    path = (root or cache_root()) / "references" / f"{key}.npy"
    vectors: Vectors | None = None
    if path.is_file():
        try:
            loaded = np.load(path)
            if loaded.shape[0] == len(texts):
                vectors = loaded.astype(np.float32, copy=False)
        except (OSError, ValueError):
            vectors = None  # a damaged file: computed again and replaced
    if vectors is None:
        if compute is None:
            from embbench.run.probe import reference_embeddings

            compute = reference_embeddings
        vectors = np.asarray(compute(model_path, tuple(texts), max_seq_length), dtype=np.float32)
        _save_atomically(path, vectors)
    _memo[key] = vectors
    return vectors


def served_length(model_path: str, max_seq_length: int | None) -> int | None:
    """The truncation length a server of `model_path` uses (None: not a readable folder)."""
    if not Path(model_path).is_dir():
        return max_seq_length
    try:
        spec = read_spec(Path(model_path))
    except EmbbenchError:
        return max_seq_length
    return min(max_seq_length or spec.max_seq_length, spec.max_positions)


def _save_atomically(path: Path, vectors: Vectors) -> None:
    # Another run (or test) may read or write the same key at once: write aside, then rename.
    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a handle: np.save would add ".npy" to a name
            np.save(handle, vectors)

    write_atomically(path, write)


def probe_indices(texts: Sequence[str], quantiles: Sequence[float] = PROBE_QUANTILES) -> list[int]:
    """Indices of the texts at these quantiles of length (characters): shortest to longest."""
    if not texts:
        return []
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    picked = [order[round(q * (len(order) - 1))] for q in quantiles]
    return list(dict.fromkeys(picked))


# -- the comparison -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerCheck:
    """Each checked answer: its input, cosine to its own reference, the nearest other input
    (-1: none) and its cosine; malformed answers (no embedding of the right width) have cosine
    0 and count in `malformed`."""

    inputs: npt.NDArray[np.int64]
    cosines: npt.NDArray[np.float64]
    nearest: npt.NDArray[np.int64]
    nearest_cosines: npt.NDArray[np.float64]
    malformed: int

    @property
    def checked(self) -> int:
        return len(self.cosines)

    @property
    def mismatched(self) -> int:
        return int((self.nearest_cosines > self.cosines).sum())

    def summary(self) -> dict[str, Any]:
        """The cell's columns (columns.py); None where nothing was checked."""
        if not self.checked:
            return {"checked": 0, "mismatched": 0, "cosine_p1": None, "cosine_p50": None}
        return {
            "checked": self.checked,
            "mismatched": self.mismatched,
            "cosine_p1": percentile(self.cosines, 1.0),
            "cosine_p50": percentile(self.cosines, 50.0),
        }

    def rows(self, kept: Sequence[Kept]) -> Iterator[tuple[Any, ...]]:
        """One row per checked answer for checks/<cell>.csv (CHECK_COLUMNS)."""
        for k, cos, near, near_cos in zip(
            kept, self.cosines, self.nearest, self.nearest_cosines, strict=True
        ):
            yield (f"{k.start:.6f}", k.index, f"{cos:.6f}", int(near), f"{near_cos:.6f}")


CHECK_COLUMNS = ["start", "input", "cosine", "nearest_other", "nearest_other_cosine"]


def percentile(values: npt.ArrayLike, q: float) -> float:
    """The q-th percentile as an observed value (the lower one): with 50 answers, p1 is the
    lowest, not a blend of the two lowest."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return math.nan
    return float(np.percentile(array, q, method="lower"))


def unit_rows(vectors: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    result: npt.NDArray[np.float64] = array / np.clip(norms, 1e-12, None)
    return result


def check_answers(
    kept: Sequence[Kept], protocol: str, reference: Vectors, threshold: float
) -> AnswerCheck:
    """Compare each kept answer with every reference (see the module's docstring)."""
    refs = unit_rows(reference)
    width = refs.shape[1]
    got = np.zeros((len(kept), width), dtype=np.float64)
    ok = np.zeros(len(kept), dtype=bool)
    for row, each in enumerate(kept):
        vector = _vector(protocol, each.body)
        if vector is not None and len(vector) == width and 0 <= each.index < len(refs):
            got[row], ok[row] = vector, True
    inputs = np.array([k.index for k in kept], dtype=np.int64)
    cosines = np.zeros(len(kept))
    nearest = np.full(len(kept), -1, dtype=np.int64)
    nearest_cos = np.full(len(kept), -1.0)
    if ok.any():
        rows = np.flatnonzero(ok)
        unit = unit_rows(got[rows])
        sims = unit @ refs.T
        own = inputs[rows]
        cosines[rows] = sims[np.arange(len(rows)), own]
        # Inputs the threshold cannot tell apart from one's own (itself included) are not
        # "another input".
        twins = (refs[own] @ refs.T) >= threshold
        twins[np.arange(len(rows)), own] = True
        others = np.where(twins, -np.inf, sims)
        best = others.argmax(axis=1)
        best_cos = others[np.arange(len(rows)), best]
        found = np.isfinite(best_cos)
        nearest[rows[found]] = best[found]
        nearest_cos[rows[found]] = best_cos[found]
    return AnswerCheck(inputs, cosines, nearest, nearest_cos, int((~ok).sum()))


def _vector(protocol: str, body: bytes) -> list[float] | None:
    try:
        vectors = parse_embeddings(protocol, json.loads(body))
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    if len(vectors) != 1:
        return None
    return vectors[0]


def failure(verdict: AnswerCheck, cosine_min: float | None, threshold: float) -> str | None:
    """Why a cell's answers were wrong, or None: one mismatched answer fails it, however fast it
    was; so do malformed answers and, as for the probe, any cosine below the threshold."""
    reasons = []
    if verdict.mismatched:
        reasons.append(
            f"{verdict.mismatched} of {verdict.checked} checked answers were closer to another "
            "input's reference than to their own"
        )
    if verdict.malformed:
        reasons.append(f"{verdict.malformed} answers held no embedding of the model's width")
    if cosine_min is not None and cosine_min < threshold:
        reasons.append(
            f"embeddings disagree with sentence-transformers: cosine {cosine_min:.4f} < {threshold}"
        )
    return "; ".join(reasons) or None
