r"""``minipg reference --check``: compare two reference directories array by array.

:func:`check` compares a candidate directory with a reference directory using
the tolerances in the manifests (:mod:`minipg.reference.format`) and reports,
per array, the worst absolute and relative error and the entry where the
tolerance is closest to being (or most) exceeded; :func:`report` is the text
the CLI prints.

Comparison rule (the same as ``numpy.allclose`` with the reference ``a``):
an entry passes when ``|b - a| <= atol + rtol * |a|``.  The reported
relative error of an entry is ``|b - a| / max(|a|, |b|)`` (0 when both are 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from .format import (MANIFEST, ROLES, MissingArrayError, ReferenceFormatError,
                     ReferenceUsageError, load_array, load_manifest)

__all__ = ["Row", "check", "compare_arrays", "format_table", "format_summary", "format_unchecked",
           "render_table", "report", "summarize", "selects", "select_cases"]


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
    checked: bool = True        # False: listed as not checked (``note`` says why), not compared


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
        if (d / MANIFEST).exists():
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


def select_cases(names, only, refusal):
    """The cases of ``names`` named in ``only`` (all of ``names`` when ``only`` is empty),
    in the order of ``names``; names of ``only`` that are not in ``names`` are a
    :class:`ReferenceUsageError` with the message ``refusal(those names)``.  The writer's
    and the checker's ``only``."""
    if not only:
        return names
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ReferenceUsageError(refusal(unknown))
    return [n for n in names if n in set(only)]


def selects(patterns, case, array):
    """Whether ``--arrays`` ``patterns`` select ``array`` of ``case`` (None selects every array).

    A pattern with a ``/`` is a glob on ``case/array`` (``ppo_objective/grad.*``,
    ``sac_*/log_prob``); one without is a glob on the array name in any case
    (``J_Q1``, ``grad.J_pi.*``).
    """
    if patterns is None:
        return True
    return any(fnmatchcase(f"{case}/{array}" if "/" in p else array, p) for p in patterns)


def _unchecked(rows, name, entries, arrays, reason):
    for array in arrays:
        rows.append(Row(name, array, entries[array]["role"] if entries else "", passed=True,
                        note=reason, checked=False))


def _check_case(name, sides, rows, notes, patterns=None, present_only=False):
    first, second = sides
    ma, mb = first.cases.get(name), second.cases.get(name)
    for side, m in ((first, ma), (second, mb)):
        if isinstance(m, ReferenceFormatError):
            rows.append(Row(name, "(manifest)", note=f"{side.label}: {m}"))
            return
    governing = ma if ma is not None else mb
    entries = governing["arrays"] if governing is not None else {}
    order = {r: i for i, r in enumerate(ROLES)}
    names = sorted(entries, key=lambda n: (order[entries[n]["role"]], n))
    selected = [n for n in names if selects(patterns, name, n)]
    if patterns is not None and not selected:
        _unchecked(rows, name, entries, names, "not selected by --arrays")
        return
    for side, m in ((first, ma), (second, mb)):
        if m is None and not (side.root / name).is_dir():
            if present_only and side is second:
                _unchecked(rows, name, entries, names, f"case absent in {second.label}")
                return
            rows.append(Row(name, "(case)", note=f"case missing in {side.label} "
                                                  f"({side.root / name} does not exist)"))
            return
    ref_side, other_side = (first, second) if ma is not None else (second, first)
    if ma is not None and mb is not None:
        fa, fb = ma.get("format_version"), mb.get("format_version")
        if fa != fb:
            rows.append(Row(name, "(manifest)", note=f"format_version {fa!r} in {first.label}, "
                                                     f"{fb!r} in {second.label}"))
            return
        pa, pb = ma.get("profile"), mb.get("profile")
        if pa is not None and pb is not None and pa != pb:
            rows.append(Row(name, "(manifest)", note=f"profile {pa!r} in {first.label}, {pb!r} "
                                                     f"in {second.label}: different conventions "
                                                     "give different numbers"))
            return
        va, vb = ma.get("minipg_version"), mb.get("minipg_version")
        if va != vb:
            notes.append(f"{name}: written by minipg {va} ({first.label}) and {vb} "
                         f"({second.label}); outputs may have changed between versions")
    _unchecked(rows, name, entries, [n for n in names if n not in selected],
               "not selected by --arrays")
    for array in selected:
        entry = entries[array]
        role, rtol, atol = entry["role"], float(entry["rtol"]), float(entry["atol"])
        required = role in ("output", "gradient") and not present_only
        loaded = {}
        problem = None
        for side in (ref_side, other_side):
            try:
                loaded[side.label] = load_array(side.root / name, array)
            except ReferenceFormatError as exc:
                if isinstance(exc, MissingArrayError) and not required:
                    problem = f"absent in {side.label}"     # need not be there: listed, not failed
                else:
                    problem = f"{side.label}: {exc}"
                break
        if problem is not None and problem.startswith("absent in "):
            _unchecked(rows, name, entries, [array], problem)
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


def check(dir_a, dir_b, only=None, arrays=None, present_only=False):
    """Compare two reference directories; returns ``(rows, notes)``.

    The cases are the sub-directories holding a ``manifest.json`` on either
    side; a case on one side only is a failure.  Tolerances and the list of
    arrays come from ``dir_a``'s manifest (``dir_b``'s when ``dir_a`` has
    none for that case, e.g. when ``dir_a`` holds bare ``.npy`` files).
    Manifests on both sides must agree on ``format_version`` and ``profile``.
    Every output and gradient must exist on both sides; inputs and
    parameters are compared when both sides have them (another
    implementation need not copy them).  ``only`` restricts the cases.

    A subset, for an implementation that exposes only some quantities:
    ``arrays`` (glob patterns, see :func:`selects`) checks only the arrays
    they select, and a pattern that selects nothing is a usage error;
    ``present_only`` checks only the arrays (and cases) ``dir_b`` has.
    Every array not compared is still a row, with ``checked=False`` and the
    reason in ``note`` (:func:`format_unchecked` lists them): nothing is
    skipped silently.  ``notes`` are informational lines (e.g. differing
    minipg versions).
    """
    sides = (_scan("DIR_A", dir_a), _scan("DIR_B", dir_b))
    found = sorted(set(sides[0].cases) | set(sides[1].cases))
    names = select_cases(found, only, lambda unknown: (
        f"--only {', '.join(unknown)}: no such case in either directory; found: "
        f"{', '.join(found) or 'none'}"))
    if not names:
        raise ReferenceUsageError(f"no reference cases (sub-directories with {MANIFEST}) in "
                                  f"{dir_a} or {dir_b}")
    if arrays is not None:
        arrays = list(arrays)
        known = [(n, a) for n in names for side in sides
                 if isinstance(side.cases.get(n), dict) for a in side.cases[n]["arrays"]]
        idle = [p for p in arrays if not any(selects([p], n, a) for n, a in known)]
        if idle:
            raise ReferenceUsageError(f"--arrays {', '.join(idle)}: selects no array of the "
                                      "cases compared (a pattern is a glob on the array name, or "
                                      "on case/array when it holds a '/')")
    rows, notes = [], []
    for name in names:
        _check_case(name, sides, rows, notes, arrays, present_only)
    if not any(r.checked for r in rows):
        raise ReferenceUsageError(f"nothing to compare: {dir_b} holds none of the selected "
                                  "arrays")
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
            for r in rows if r.checked]
    return render_table(header, body, markdown)


def format_unchecked(rows):
    """The arrays not compared, one line per case and reason (empty string when none)."""
    groups, per_case = {}, {}
    for r in rows:
        per_case[r.case] = per_case.get(r.case, 0) + 1
        if not r.checked:
            groups.setdefault((r.case, r.note), []).append(r.array)
    return "\n".join(
        f"{case} ({reason}): " + (f"all {len(arrays)} arrays" if len(arrays) == per_case[case]
                                  else ", ".join(arrays))
        for (case, reason), arrays in groups.items())


def summarize(rows):
    """Per case: (case, arrays compared, worst rel err, worst abs err, passed)."""
    out = {}
    for r in rows:
        if not r.checked:
            continue
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
    checked = [r for r in rows if r.checked]
    failed = [r for r in checked if not r.passed]
    unchecked = len(rows) - len(checked)
    cases = summarize(rows)
    parts = [format_table(rows), "", format_summary(rows), ""]
    if unchecked:
        parts += [f"not checked ({unchecked} arrays):", format_unchecked(rows), ""]
    parts += [f"note: {n}" for n in notes]
    parts.append(f"{len(checked) - len(failed)}/{len(checked)} arrays agree; "
                 f"{unchecked} not checked; {sum(c[4] for c in cases)}/{len(cases)} cases pass")
    return "\n".join(parts)
