r"""The reference file format: names, roles, tolerances, the document's sections, save and load.

One case is a directory::

    DIR/<case>/manifest.json     names, shapes, dtypes, roles, tolerances,
                                 hyperparameters, network layouts, formulas
    DIR/<case>/<array>.npy       one array each (np.save, never pickled)

documented in ``verification/reference/SCHEMA.md``.  Writing is
byte-identical for the same minipg version (sorted keys, no timestamps,
little-endian C-ordered arrays); reading uses ``allow_pickle=False`` and
checks array names, so that a foreign manifest cannot name a path outside
its case.

This module imports nothing else from :mod:`minipg.reference`: the checker
(:mod:`minipg.reference.check`), the case builder
(:mod:`minipg.reference.case`) and the cases import it, never the reverse.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from .. import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "ROLES", "DOCUMENT", "SECTIONS", "RTOL", "ATOL",
           "INPUT_RTOL", "INPUT_ATOL", "MANIFEST", "ReferenceUsageError", "ReferenceFormatError",
           "MissingArrayError", "check_name", "manifest_bytes", "manifest_header", "save_case",
           "is_reference_case", "load_manifest", "load_array"]

FORMAT = "minipg-reference"
FORMAT_VERSION = 1

#: the roles an array can have, in the order the manifest and the table list them
ROLES = ("input", "parameter", "output", "gradient")

#: the document every case cites, and its section headings a manifest's "section" may name
DOCUMENT = 'L. Weng, "Policy Gradient Algorithms" (2018)'
SECTIONS = ("Proof of Policy Gradient Theorem", "REINFORCE", "Actor-Critic",
            "Off-Policy Policy Gradient", "A3C", "A2C", "DPG", "DDPG", "D4PG", "MADDPG", "TRPO",
            "PPO", "ACER", "ACKTR",
            "SAC",
            "SAC with Automatically Adjusted Temperature", "TD3")

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

#: the file name of a case's manifest
MANIFEST = "manifest.json"

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")


class ReferenceUsageError(ValueError):
    """A user mistake (unknown case, unusable directory): the CLI prints it in one line."""


class ReferenceFormatError(ValueError):
    """A manifest or array file that is missing, unreadable or not in the format."""


class MissingArrayError(ReferenceFormatError):
    """An array file named by a manifest does not exist."""


# ---------------------------------------------------------------- names and manifests

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


def manifest_header(case, section, **fields):
    """The fields every manifest starts with (used by the cases and by other writers).

    ``section`` must be one of :data:`SECTIONS`, the headings of :data:`DOCUMENT`.
    """
    if section not in SECTIONS:
        raise ReferenceFormatError(f"case {case!r}: section {section!r} is not a section of "
                                   f"{DOCUMENT}; accepted: {', '.join(SECTIONS)}")
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "minipg_version": __version__,
            "case": check_name(case, "case"), "section": section, **fields}


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
    (directory / MANIFEST).write_bytes(manifest_bytes(manifest))


# ---------------------------------------------------------------- reading

def is_reference_case(directory):
    """True when ``directory/manifest.json`` exists and says it is a minipg reference case."""
    try:
        m = json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("format") == FORMAT


def load_manifest(directory):
    """The parsed ``manifest.json`` of a case directory (ReferenceFormatError if unusable)."""
    path = Path(directory) / MANIFEST
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
