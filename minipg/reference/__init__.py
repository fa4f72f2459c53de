r"""``minipg reference``: seeded reference inputs and float64 outputs, and the checker.

For the author of another implementation (PyTorch, JAX, ...) of the losses of
"Policy Gradient Algorithms" (L. Weng, 2018): every estimator and target in
:mod:`minipg.estimators` (and the return/advantage kernels) is run on small,
seeded, documented inputs, and the inputs, the intermediate quantities, the
loss values and the gradients are written to disk in a plain format that any
language can read (``verification/reference/SCHEMA.md``).

The package, in import order (each module imports only those above it; a
test asserts that the package's import graph has no loop):

* :mod:`~minipg.reference.format` -- the file format, the document's
  sections, tolerances, saving and loading;
* :mod:`~minipg.reference.profiles` -- the conventions that decide the
  numbers, and the profiles (``minipg``, ``sb3``, ``cleanrl``) that choose them;
* :mod:`~minipg.reference.check` -- :func:`check` (all arrays, or a subset)
  and the tables it prints;
* :mod:`~minipg.reference.case` -- the case builder and :data:`CASES`, the
  registry of cases;
* ``cases_classical``, ``cases_returns``, ``cases_onpolicy``,
  ``cases_offpolicy`` -- the cases, one module per family, registered by
  decorator and imported on first use;
* :mod:`~minipg.reference.writer` -- :func:`write`.
"""

from __future__ import annotations

from .case import CASES, build
from .check import (Row, check, compare_arrays, format_summary, format_table, format_unchecked,
                    render_table, report, selects, summarize)
from .format import (ATOL, DOCUMENT, FORMAT, FORMAT_VERSION, INPUT_ATOL, INPUT_RTOL, MANIFEST,
                     ROLES, RTOL, SECTIONS, MissingArrayError, ReferenceFormatError,
                     ReferenceUsageError, check_name, load_array, load_manifest,
                     manifest_bytes, manifest_header, save_case)
from .profiles import CONVENTIONS, DEFAULT_PROFILE, PROFILES
from .writer import case_names, write

__all__ = ["FORMAT", "FORMAT_VERSION", "ROLES", "DOCUMENT", "SECTIONS", "RTOL", "ATOL",
           "INPUT_RTOL", "INPUT_ATOL", "MANIFEST", "ReferenceUsageError", "ReferenceFormatError",
           "MissingArrayError", "check_name", "manifest_bytes", "manifest_header", "save_case",
           "load_manifest", "load_array", "CASES", "build", "case_names", "write", "check",
           "Row", "compare_arrays", "format_table", "format_summary", "format_unchecked",
           "render_table", "report", "selects", "summarize", "PROFILES", "DEFAULT_PROFILE",
           "CONVENTIONS"]
