r"""``minipg reference``: seeded reference inputs and float64 outputs, and the checker.

For the author of another implementation (PyTorch, JAX, ...) of the losses of
"Policy Gradient Algorithms" (L. Weng, 2018): every estimator and target in
:mod:`minipg.estimators` (and the return/advantage kernels) is run on small,
seeded, documented inputs, and the inputs, the intermediate quantities, the
loss values and the gradients are written to disk in a plain format that any
language can read.  The format is documented in
``verification/reference/SCHEMA.md``; in short::

    DIR/<case>/manifest.json     names, shapes, dtypes, roles, tolerances,
                                 hyperparameters, network layouts, formulas
    DIR/<case>/<array>.npy       one array each (np.save, never pickled)

The cases themselves are defined in :mod:`minipg.reference_cases`.  This
module holds what does not depend on them: writing a case (byte-identical
for the same minipg version: sorted keys, no timestamps, fixed seeds,
little-endian C-ordered arrays), reading one (``allow_pickle=False``; array
names are checked so that a foreign manifest cannot name a path outside its
case), and :func:`check`, which compares two reference directories with the
tolerances in the manifests and reports, per array, the worst absolute and
relative error and the entry where the tolerance is closest to being (or
most) exceeded.

Comparison rule (the same as ``numpy.allclose`` with the reference ``a``):
an entry passes when ``|b - a| <= atol + rtol * |a|``.  The reported
relative error of an entry is ``|b - a| / max(|a|, |b|)`` (0 when both are 0).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "ROLES", "RTOL", "ATOL", "INPUT_RTOL", "INPUT_ATOL",
           "ReferenceUsageError", "ReferenceFormatError", "save_case", "load_manifest",
           "load_array", "write", "case_names", "check", "Row", "compare_arrays", "format_table",
           "format_summary", "render_table", "report", "summarize", "manifest_header"]

FORMAT = "minipg-reference"
FORMAT_VERSION = 1

#: the roles an array can have, in the order the manifest and the table list them
ROLES = ("input", "parameter", "output", "gradient")

# Default tolerances (justified in verification/reference/SCHEMA.md).  Outputs
# and gradients: two correct float64 implementations differ only by rounding
# and summation order, ~1e-14 relative for these small, well-scaled cases;
# 1e-10 leaves four orders of margin and still catches any wrong term (a wrong
# factor, sign, missing term or held-constant input changes results at 1e-3 or
# more).  atol covers entries that are mathematically small sums of O(1) terms.
RTOL = 1e-10
ATOL = 1e-12
# Inputs and parameters are data: a reader compares them only to make sure it
# ran on the same inputs; they may differ from a fresh write on another
# platform by a few ulps (an input derived with exp/log), never by more.
INPUT_RTOL = 1e-13
INPUT_ATOL = 0.0

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")
_MANIFEST = "manifest.json"


class ReferenceUsageError(ValueError):
    """A user mistake (unknown case, unusable directory): the CLI prints it in one line."""


class ReferenceFormatError(ValueError):
    """A manifest or array file that is missing, unreadable or not in the format."""


class MissingArrayError(ReferenceFormatError):
    """An array file named by a manifest does not exist."""


# ---------------------------------------------------------------- writing

def _little_endian(a):
    """C-ordered, little-endian copy: the same bytes on every machine."""
    a = np.array(a, order="C", copy=True)           # (ascontiguousarray would make 0-d 1-d)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and np.little_endian is False):
        a = a.astype(a.dtype.newbyteorder("<"))
    return a


def _dtype_name(a):
    return {"f": f"float{8 * a.dtype.itemsize}", "i": f"int{8 * a.dtype.itemsize}",
            "u": f"uint{8 * a.dtype.itemsize}", "b": "bool"}.get(a.dtype.kind, str(a.dtype))


def check_name(name, what="array"):
    """A case or array name usable as a file name on every system (no path separators)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ReferenceFormatError(
            f"{what} name {name!r} is not allowed; accepted: letters, digits, '_', '.', '-' "
            "(not starting with '.' or '-', at most 200 characters)")
    return name


def manifest_bytes(manifest):
    """The manifest as written: sorted keys, one space indent, ASCII, a final newline."""
    return (json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=True,
                       allow_nan=False) + "\n").encode("ascii")


def save_case(directory, manifest, arrays):
    """Write one case: ``directory/manifest.json`` and ``directory/<name>.npy`` per array.

    ``manifest["arrays"]`` must name exactly the keys of ``arrays``; each
    entry's ``shape`` and ``dtype`` are filled in from the array.  Numeric
    arrays only (bool, integer, float); object arrays are refused.  The
    directory is created; files of an earlier case there are replaced.
    """
    directory = Path(directory)
    entries = manifest.get("arrays", {})
    if set(entries) != set(arrays):
        raise ReferenceFormatError(
            f"case {manifest.get('case')!r}: manifest arrays {sorted(set(entries) ^ set(arrays))} "
            "do not match the arrays given")
    directory.mkdir(parents=True, exist_ok=True)
    for name in sorted(arrays):
        check_name(name)
        a = np.asarray(arrays[name])
        if a.dtype.kind not in "biuf":
            raise ReferenceFormatError(f"array {name!r} has dtype {a.dtype}; accepted: bool, "
                                       "integer or float")
        a = _little_endian(a)
        entries[name]["shape"] = list(a.shape)
        entries[name]["dtype"] = _dtype_name(a)
        with open(directory / f"{name}.npy", "wb") as fh:
            np.save(fh, a, allow_pickle=False)
    (directory / _MANIFEST).write_bytes(manifest_bytes(manifest))


def _is_reference_case(directory):
    try:
        m = json.loads((directory / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("format") == FORMAT


def case_names():
    """The names of the reference cases, in the order they are written."""
    from .reference_cases import CASES
    return list(CASES)


def write(out, only=None):
    """Write every case (or those named in ``only``) under ``out``; returns the names.

    A case directory that already exists is replaced only if it holds a
    minipg reference case (its ``manifest.json`` says so); anything else is
    refused with :class:`ReferenceUsageError`, as are unknown case names.
    """
    from .reference_cases import CASES, build
    names = list(CASES)
    if only:
        unknown = [n for n in only if n not in CASES]
        if unknown:
            raise ReferenceUsageError(f"unknown reference case {', '.join(map(repr, unknown))}; "
                                      f"accepted: {', '.join(names)}")
        names = [n for n in names if n in set(only)]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReferenceUsageError(f"--out {out} exists and is not a directory")
    for name in names:
        case_dir = out / name
        if case_dir.exists():
            if not case_dir.is_dir() or not _is_reference_case(case_dir):
                raise ReferenceUsageError(
                    f"{case_dir} exists and is not a minipg reference case; refusing to "
                    "overwrite it (choose another --out)")
            for old in list(case_dir.glob("*.npy")) + [case_dir / _MANIFEST]:
                old.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReferenceUsageError(f"cannot create --out {out}: {exc.strerror}") from None
    for name in names:
        manifest, arrays = build(name)
        save_case(out / name, manifest, arrays)
    return names


# ---------------------------------------------------------------- reading

def load_manifest(directory):
    """The parsed ``manifest.json`` of a case directory (ReferenceFormatError if unusable)."""
    path = Path(directory) / _MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReferenceFormatError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReferenceFormatError(f"{path} cannot be read: {exc}") from None
    try:
        m = json.loads(text)
    except ValueError as exc:
        raise ReferenceFormatError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ReferenceFormatError(f"{path} is not a minipg reference manifest (its \"format\" "
                                   f"must be {FORMAT!r})")
    arrays = m.get("arrays")
    if not isinstance(arrays, dict):
        raise ReferenceFormatError(f"{path}: \"arrays\" must be an object name -> entry")
    for name, entry in arrays.items():
        check_name(name)
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            raise ReferenceFormatError(f"{path}: array {name!r} needs a \"role\" in {ROLES}")
        for key in ("rtol", "atol"):
            v = entry.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0 \
                    or not math.isfinite(v):
                raise ReferenceFormatError(f"{path}: array {name!r} needs a finite {key} >= 0")
    return m


def load_array(directory, name):
    """``directory/<name>.npy`` read with ``allow_pickle=False`` (ReferenceFormatError if not).

    The header is read first: a file without the ``.npy`` magic, or whose
    dtype holds Python objects (a pickle inside), is refused before any data
    is read; so are dtypes other than bool, integer and float.
    """
    check_name(name)
    path = Path(directory) / f"{name}.npy"
    try:
        with open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                raise ReferenceFormatError(f"{path.name} is not a readable .npy file (no .npy "
                                           "magic string; a pickle or another format)")
            fh.seek(0)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ReferenceFormatError(f"{path.name} is .npy format version {version}; "
                                           "accepted: 1.0 or 2.0")
            if dtype.hasobject:
                raise ReferenceFormatError(f"{path.name} holds pickled data (an object array); "
                                           "refused: reference files are read with "
                                           "allow_pickle=False")
            if dtype.kind not in "biuf":
                raise ReferenceFormatError(f"{path.name} has dtype {dtype}; accepted: bool, "
                                           "integer or float")
            count = math.prod(shape)
            data = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype, count=count)
            return data.reshape(shape, order="F" if fortran else "C").copy()
    except FileNotFoundError:
        raise MissingArrayError(f"{path.name} is missing") from None
    except ReferenceFormatError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise ReferenceFormatError(f"{path.name} is not a readable .npy file: {exc}") from None


# ---------------------------------------------------------------- checking

@dataclass
class Row:
    """One line of the check table: one array of one case (or a case-level failure)."""
    case: str
    array: str
    role: str = ""
    max_abs: float = float("nan")
    max_rel: float = float("nan")
    index: tuple | None = None
    rtol: float = float("nan")
    atol: float = float("nan")
    passed: bool = False
    note: str = ""


@dataclass
class _Side:
    label: str
    root: Path
    cases: dict = field(default_factory=dict)    # name -> manifest, or ReferenceFormatError


def _scan(label, root):
    root = Path(root)
    if not root.is_dir():
        raise ReferenceUsageError(f"{label} {root} is not a directory")
    side = _Side(label, root)
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if (d / _MANIFEST).exists():
            try:
                side.cases[d.name] = load_manifest(d)
            except ReferenceFormatError as exc:
                side.cases[d.name] = exc
    return side


def compare_arrays(a, b, rtol, atol):
    """(max_abs, max_rel, worst_index, passed) for reference ``a`` and candidate ``b``.

    Same shape required (the caller checks).  Entries pass when
    ``|b - a| <= atol + rtol |a|``; non-finite entries pass only where both
    arrays hold the same non-finite value.  The worst index is the entry with
    the largest error relative to what the tolerance allows.
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    finite = np.isfinite(a64) & np.isfinite(b64)
    same_special = ~finite & ((a64 == b64) | (np.isnan(a64) & np.isnan(b64)))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(finite, np.abs(b64 - a64), np.where(same_special, 0.0, np.inf))
        scale = np.maximum(np.abs(np.where(finite, a64, 0.0)), np.abs(np.where(finite, b64, 0.0)))
        rel = np.where(err == 0.0, 0.0, np.where(scale > 0, err / np.where(scale > 0, scale, 1.0),
                                                   np.inf))
        allowed = atol + rtol * np.abs(np.where(finite, a64, 0.0))
        excess = np.where(err == 0.0, 0.0, np.where(allowed > 0, err / np.where(
            allowed > 0, allowed, 1.0), np.inf))
    passed = bool(np.all(err <= allowed))
    if a64.size == 0:
        return 0.0, 0.0, (), passed
    flat = int(np.argmax(excess))
    index = tuple(int(i) for i in np.unravel_index(flat, a64.shape))
    return float(np.max(err)), float(np.max(rel)), index, passed


def _check_case(name, sides, rows, notes):
    first, second = sides
    ma, mb = first.cases.get(name), second.cases.get(name)
    for side, m in ((first, ma), (second, mb)):
        if isinstance(m, ReferenceFormatError):
            rows.append(Row(name, "(manifest)", note=f"{side.label}: {m}"))
            return
    if ma is None and not (first.root / name).is_dir():
        rows.append(Row(name, "(case)", note=f"case missing in {first.label} "
                                              f"({first.root / name} does not exist)"))
        return
    if mb is None and not (second.root / name).is_dir():
        rows.append(Row(name, "(case)", note=f"case missing in {second.label} "
                                              f"({second.root / name} does not exist)"))
        return
    governing = ma if ma is not None else mb
    ref_side, other_side = (first, second) if ma is not None else (second, first)
    if ma is not None and mb is not None:
        fa, fb = ma.get("format_version"), mb.get("format_version")
        if fa != fb:
            rows.append(Row(name, "(manifest)", note=f"format_version {fa!r} in {first.label}, "
                                                     f"{fb!r} in {second.label}"))
            return
        va, vb = ma.get("minipg_version"), mb.get("minipg_version")
        if va != vb:
            notes.append(f"{name}: written by minipg {va} ({first.label}) and {vb} "
                         f"({second.label}); outputs may have changed between versions")
    entries = governing["arrays"]
    order = {r: i for i, r in enumerate(ROLES)}
    for array in sorted(entries, key=lambda n: (order[entries[n]["role"]], n)):
        entry = entries[array]
        role, rtol, atol = entry["role"], float(entry["rtol"]), float(entry["atol"])
        required = role in ("output", "gradient")
        loaded = {}
        problem = None
        for side in (ref_side, other_side):
            try:
                loaded[side.label] = load_array(side.root / name, array)
            except ReferenceFormatError as exc:
                if isinstance(exc, MissingArrayError) and not required:
                    problem = "skip"        # inputs need not be copied by another implementation
                else:
                    problem = f"{side.label}: {exc}"
                break
        if problem == "skip":
            continue
        if problem is not None:
            rows.append(Row(name, array, role, rtol=rtol, atol=atol, note=problem))
            continue
        a, b = loaded[ref_side.label], loaded[other_side.label]
        if a.shape != b.shape:
            rows.append(Row(name, array, role, rtol=rtol, atol=atol,
                            note=f"shape {a.shape} in {ref_side.label}, {b.shape} in "
                                 f"{other_side.label}"))
            continue
        max_abs, max_rel, index, passed = compare_arrays(a, b, rtol, atol)
        rows.append(Row(name, array, role, max_abs, max_rel, index, rtol, atol, passed))


def check(dir_a, dir_b, only=None):
    """Compare two reference directories; returns ``(rows, notes)``.

    The cases are the sub-directories holding a ``manifest.json`` on either
    side; a case on one side only is a failure.  Tolerances and the list of
    arrays come from ``dir_a``'s manifest (``dir_b``'s when ``dir_a`` has
    none for that case, e.g. when ``dir_a`` holds bare ``.npy`` files).
    Every output and gradient must exist on both sides; inputs and
    parameters are compared when both sides have them (another
    implementation need not copy them).  ``only`` restricts the cases.
    ``notes`` are informational lines (e.g. differing minipg versions).
    """
    sides = (_scan("DIR_A", dir_a), _scan("DIR_B", dir_b))
    names = sorted(set(sides[0].cases) | set(sides[1].cases))
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ReferenceUsageError(f"--only {', '.join(unknown)}: no such case in either "
                                      f"directory; found: {', '.join(names) or 'none'}")
        names = [n for n in names if n in set(only)]
    if not names:
        raise ReferenceUsageError(f"no reference cases (sub-directories with {_MANIFEST}) in "
                                  f"{dir_a} or {dir_b}")
    rows, notes = [], []
    for name in names:
        _check_case(name, sides, rows, notes)
    return rows, notes


# ---------------------------------------------------------------- tables

def _num(x):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2e}"


def _index(ix):
    if ix is None:
        return "-"
    return "()" if ix == () else "(" + ",".join(str(i) for i in ix) + ")"


def format_table(rows, markdown=False):
    """The per-array table: case, array, role, worst abs/rel error, worst entry, tolerances."""
    header = ("case", "array", "role", "max abs err", "max rel err", "worst entry", "rtol",
              "atol", "result")
    body = [(r.case, r.array, r.role or "-", _num(r.max_abs), _num(r.max_rel), _index(r.index),
             _num(r.rtol), _num(r.atol),
             ("PASS" if r.passed else "FAIL") + (f": {r.note}" if r.note else ""))
            for r in rows]
    return render_table(header, body, markdown)


def summarize(rows):
    """Per case: (case, arrays compared, worst rel err, worst abs err, passed)."""
    out = {}
    for r in rows:
        s = out.setdefault(r.case, [0, 0.0, 0.0, True])
        s[0] += 1 if r.index is not None else 0
        if not math.isnan(r.max_rel):
            s[1] = max(s[1], r.max_rel)
            s[2] = max(s[2], r.max_abs)
        s[3] = s[3] and r.passed
    return [(case, *vals) for case, vals in out.items()]


def format_summary(rows, markdown=False):
    """The per-case table: arrays compared, worst relative and absolute error, PASS/FAIL."""
    header = ("case", "arrays", "worst rel err", "worst abs err", "result")
    body = [(case, str(n), _num(rel), _num(ab), "PASS" if ok else "FAIL")
            for case, n, rel, ab, ok in summarize(rows)]
    return render_table(header, body, markdown)


def render_table(header, body, markdown=False):
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(header[i]), *(len(row[i]) for row in body)) if body else len(header[i])
              for i in range(len(header))]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header)] + [fmt(row) for row in body])


def report(rows, notes):
    """The text ``minipg reference --check`` prints."""
    failed = [r for r in rows if not r.passed]
    cases = summarize(rows)
    parts = [format_table(rows), "", format_summary(rows), ""]
    parts += [f"note: {n}" for n in notes]
    parts.append(f"{len(rows) - len(failed)}/{len(rows)} arrays agree; "
                 f"{sum(c[4] for c in cases)}/{len(cases)} cases pass")
    return "\n".join(parts)


def manifest_header(case, section, **fields):
    """The fields every manifest starts with (used by the cases and by other writers)."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "minipg_version": __version__,
            "case": check_name(case, "case"), "section": section, **fields}
