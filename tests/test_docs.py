"""The documents the project cites are in the repository, and so are their sections.

Scanned: every ``.py`` file of ``minipg/`` and ``tests/``, every ``.py`` and
``.md`` file of ``verification/``, and the top-level ``README.md`` and
``CONTRIBUTING.md``. The rules (CONTRIBUTING.md, "Conventions"):

* a Markdown file named in a scanned file exists in the repository: a path
  resolves from the repository root or from the citing file's directory, and
  a bare file name that does not may name the one Markdown file of the
  repository that has that name (``SCHEMA.md``); a Markdown file of another
  project is allowed only from ``EXTERNAL``, with that project named on the
  same line;
* a section cited after the formulas page or the contributing guide, as in
  ``verification/FORMULAS.md "Losses/PPO"`` or
  ``CONTRIBUTING.md, "Verification levels"``, names a heading of that file:
  the heading's text, the text without the sources in brackets, or its words
  up to the first comma; a subsection may be named after its parent, joined
  by a slash ("Tabular MDP/Fisher").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Markdown files of other projects that may be named, with a word that must be
# on the same line to say whose file it is (names built from parts, so that this
# file does not name them itself).
EXTERNAL = {"benchmark" + ".md": "zoo"}  # rl-baselines3-zoo's table of results

# A file name ending in .md, not in the middle of a longer name or a URL, and
# not an attribute access whose name merely starts with "md".
MD_NAME = re.compile(r"(?<![\w./:-])((?:\.\.?/)*[A-Za-z_][\w/.-]*\.md)(?!\w)")

# Whitespace between parts of a citation: spaces, and at most one line break
# followed by indentation and an optional comment marker.
_WS = r"[ \t]*(?:\n[ \t]*(?:#[ \t]*)?)?"
_QUOTED = r'"[^"\n]+"'
SECTION_CITE = re.compile(
    r"((?<![\w.-])(?:[\w.-]+/)*(?:FORMULAS|CONTRIBUTING)\.md)"  # the document
    r"`{0,2}(?:\]\([^)\s]*\))?"                                # ``code`` or [link](target)
    r"[,:]?" + _WS + r"\(?"                                    # separator, optional "("
    r"(" + _QUOTED + r"(?:" + _WS + r"(?:,|and)" + _WS + _QUOTED + r")*)")


def scanned_files():
    files = sorted((ROOT / "minipg").rglob("*.py")) + sorted((ROOT / "tests").rglob("*.py"))
    for pattern in ("*.py", "*.md"):
        files += sorted((ROOT / "verification").rglob(pattern))
    files += [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    return [f for f in files if f.is_file() and "__pycache__" not in f.parts]


def markdown_files():
    """The repository's own Markdown files (top level, minipg/, tests/, verification/)."""
    files = sorted(ROOT.glob("*.md"))
    for folder in ("minipg", "tests", "verification"):
        files += sorted((ROOT / folder).rglob("*.md"))
    return files


def resolve(name, citing):
    """The cited file as a path in the repository, or None."""
    for base in (ROOT, citing.parent):
        path = (base / name).resolve()
        if path.is_file() and ROOT in path.parents:
            return path
    if "/" not in name:
        same = [f for f in markdown_files() if f.name == name]
        if len(same) == 1:
            return same[0]
    return None


def cited_files(text):
    """[(line number, name, line)] of every Markdown file named in ``text``."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        found += [(number, m.group(1), line) for m in MD_NAME.finditer(line)]
    return found


def cited_sections(text):
    """[(line number, document, [section names])] of every section citation in ``text``."""
    found = []
    for m in SECTION_CITE.finditer(text):
        names = re.findall(r'"([^"\n]+)"', m.group(2))
        found.append((text.count("\n", 0, m.start()) + 1, m.group(1), names))
    return found


def _names(heading):
    """The ways a heading may be named: whole, without "[sources]", up to the first comma."""
    whole = heading.strip()
    bare = re.sub(r"\s*\[[^\]]*\]\s*$", "", whole).strip()
    return {whole, bare, bare.split(",")[0].strip()}


def headings(markdown):
    """Every name a section of ``markdown`` can be cited by (see the module docstring)."""
    names, parents, fenced = set(), {}, False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        level, own = len(m.group(1)), _names(m.group(2))
        names |= own
        parent = max((lv for lv in parents if 1 < lv < level), default=None)
        if parent is not None:
            names |= {f"{p}/{c}" for p in parents[parent] for c in own}
        parents = {lv: n for lv, n in parents.items() if lv < level}
        parents[level] = own
    return names


def _rel(path):
    return path.relative_to(ROOT).as_posix()


def test_every_cited_markdown_file_is_in_the_repository():
    dangling = []
    for path in scanned_files():
        for number, name, line in cited_files(path.read_text(encoding="utf-8")):
            base = name.rsplit("/", 1)[-1]
            if base in EXTERNAL and EXTERNAL[base] in line:
                continue
            if resolve(name, path) is None:
                dangling.append(f"{_rel(path)}:{number} cites {name}")
    assert not dangling, "Markdown files cited but not in the repository:\n" + "\n".join(dangling)


def test_every_cited_section_exists():
    missing, cache = [], {}
    for path in scanned_files():
        for number, document, names in cited_sections(path.read_text(encoding="utf-8")):
            target = resolve(document, path)
            if target is None:
                missing.append(f"{_rel(path)}:{number} cites {document}, not in the repository")
                continue
            if target not in cache:
                cache[target] = headings(target.read_text(encoding="utf-8"))
            missing += [f'{_rel(path)}:{number} cites {document} "{n}", '
                        f"not a heading of {_rel(target)}" for n in names if n not in cache[target]]
    assert not missing, "cited sections that do not exist:\n" + "\n".join(missing)


# --- the checker itself finds what it should --------------------------------------------------
# (document names are built from parts so that this file does not cite them)
FORMULAS = "verification/FORMULAS" + ".md"
GUIDE = "CONTRIBUTING" + ".md"


@pytest.mark.parametrize("text, expected", [
    (f'see {FORMULAS} "Losses/PPO".', [(FORMULAS, ["Losses/PPO"])]),
    (f'({GUIDE}, "Verification levels")', [(GUIDE, ["Verification levels"])]),
    (f'({GUIDE} ("Conventions"))', [(GUIDE, ["Conventions"])]),
    (f'``{FORMULAS}`` ("Tabular MDP", "Off-policy")', [(FORMULAS, ["Tabular MDP", "Off-policy"])]),
    (f'# x ({FORMULAS} "Tabular MDP/Fisher"\n    # and "LQR").',
     [(FORMULAS, ["Tabular MDP/Fisher", "LQR"])]),
    (f'the PPO derivative of {FORMULAS}\n  "Losses/PPO" (property-based)',
     [(FORMULAS, ["Losses/PPO"])]),
    (f'[{GUIDE}]({GUIDE}), "Verification levels"', [(GUIDE, ["Verification levels"])]),
    (f"{GUIDE}'s tolerances, {GUIDE}: eps", []),
])
def test_section_citations_are_found(text, expected):
    assert [(doc, names) for _, doc, names in cited_sections(text)] == expected


def test_markdown_names_are_found_and_attributes_are_not():
    text = ("see verification/results/engine_bench" + ".md and ../README" + ".md;\n"
            "self." + "mdp.n_states, env.unwrapped." + "mdp, https://example.org/a/NOTES" + ".md")
    assert [name for _, name, _ in cited_files(text)] == [
        "verification/results/engine_bench" + ".md", "../README" + ".md"]


def test_citations_resolve_and_headings_are_named():
    assert resolve("NO_SUCH_FILE" + ".md", ROOT / "tests" / "x.py") is None
    assert resolve("CONTRIBUTING" + ".md", ROOT / "tests" / "x.py") == ROOT / GUIDE
    assert resolve("../CONTRIBUTING" + ".md", ROOT / "verification" / "README.md") == ROOT / GUIDE
    schema = ROOT / "verification" / "reference" / ("SCHEMA" + ".md")
    assert resolve("SCHEMA" + ".md", ROOT / "tests" / "x.py") == schema
    assert resolve("results/NO_SUCH_FILE" + ".md", ROOT / "verification" / "README.md") is None
    names = headings("# T\n## Losses [A 2017]\n### PPO\n"
                     "```\n## not a heading\n```\n## TRPO, K-FAC\n")
    assert {"Losses", "Losses [A 2017]", "Losses/PPO", "PPO", "TRPO", "TRPO, K-FAC"} <= names
    assert "not a heading" not in names and "T/Losses" not in names


def test_the_formulas_and_the_guide_have_the_sections_the_code_relies_on():
    formulas = headings((ROOT / FORMULAS).read_text(encoding="utf-8"))
    for name in ("Tabular MDP", "Tabular MDP/Fisher", "Off-policy", "LQR",
                 "TRPO, K-FAC, ACKTR", "Retrace and ACER", "Losses", "Losses/PPO", "Losses/TD3",
                 "Losses/SAC", "Losses/C51/D4PG projection"):
        assert name in formulas, name
    guide = headings((ROOT / GUIDE).read_text(encoding="utf-8"))
    for name in ("Verification levels", "Conventions", "Test tolerances", "Architecture/Layout",
                 "Architecture/Registries", "The user contract"):
        assert name in guide, name
