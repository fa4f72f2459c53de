"""``minipg reference --out``: write the registered cases into a directory.

A case directory that already exists is replaced only if it holds a minipg
reference case (its ``manifest.json`` says so); anything else is refused.
"""

from __future__ import annotations

from pathlib import Path

from .case import CASES, build
from .check import select_cases
from .format import MANIFEST, ReferenceUsageError, is_reference_case, save_case
from .profiles import DEFAULT_PROFILE, PROFILES

__all__ = ["case_names", "write"]


def case_names():
    """The names of the reference cases, in the order they are written."""
    return CASES.names()


def write(out, only=None, profile=DEFAULT_PROFILE):
    """Write every case (or those named in ``only``) under ``out``; returns the names.

    ``profile`` names the conventions the cases are written in (see
    :mod:`minipg.reference.profiles`); an unknown one is a
    :class:`ReferenceUsageError`.  A case directory that already exists is replaced only if it holds a
    minipg reference case (its ``manifest.json`` says so); anything else is
    refused with :class:`ReferenceUsageError`, as are unknown case names.
    """
    if profile not in PROFILES:
        raise ReferenceUsageError(f"unknown reference profile {profile!r}; accepted: "
                                  f"{', '.join(PROFILES)}")
    accepted = case_names()
    names = select_cases(accepted, only, lambda unknown: (
        f"unknown reference case {', '.join(map(repr, unknown))}; accepted: "
        f"{', '.join(accepted)}"))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReferenceUsageError(f"--out {out} exists and is not a directory")
    for name in names:
        case_dir = out / name
        if case_dir.exists():
            if not case_dir.is_dir() or not is_reference_case(case_dir):
                raise ReferenceUsageError(
                    f"{case_dir} exists and is not a minipg reference case; refusing to "
                    "overwrite it (choose another --out)")
            for old in list(case_dir.glob("*.npy")) + [case_dir / MANIFEST]:
                old.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReferenceUsageError(f"cannot create --out {out}: {exc.strerror}") from None
    for name in names:
        manifest, arrays = build(name, profile)
        save_case(out / name, manifest, arrays)
    return names
