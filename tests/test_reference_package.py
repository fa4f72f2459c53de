"""The shape of `minipg.reference`: no import loop, one registry, the sections named once.

The package was two modules that imported each other; these tests keep it a
package whose modules import only "downwards" (format <- check, case <- the
case families <- writer), whose case families are all listed in its registry,
and whose manifests name only the document's sections.
"""

import ast
from pathlib import Path

import pytest

from minipg import reference
from minipg.reference import format as fmt

PACKAGE = Path(reference.__file__).resolve().parent
NAME = "minipg.reference"


def _module_name(path):
    return NAME if path.name == "__init__.py" else f"{NAME}.{path.stem}"


def _imported_modules(path, modules):
    """The package modules that ``path`` imports (at any level, functions included)."""
    current = _module_name(path)
    package = NAME.split(".")                 # every module here is directly in the package
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    found.add(sub)            # from . import check -> the submodule
                elif target in modules:
                    found.add(target)         # from .format import X -> format
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
    found.discard(current)
    return found


def _graph():
    paths = sorted(PACKAGE.glob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imported_modules(p, modules) for p in paths}


def _cycle(graph):
    """One import cycle as a list of modules, or None (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_package_import_graph_has_no_loop():
    graph = _graph()
    assert f"{NAME}.format" in graph and f"{NAME}.case" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # no module of the package imports the package itself (its __init__ re-exports them all)
    assert [m for m, deps in graph.items() if NAME in deps] == []
    # the format is the bottom: it imports nothing else from the package
    assert graph[f"{NAME}.format"] == set()


def test_the_cycle_finder_finds_a_loop():
    """The acyclicity test can fail: a two-module loop like the old one is found."""
    old = {"minipg.reference": {"minipg.reference_cases"},
           "minipg.reference_cases": {"minipg.reference"}}
    assert _cycle(old) == ["minipg.reference", "minipg.reference_cases", "minipg.reference"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_case_family_module_is_listed_in_the_registry_and_registers_cases():
    families = {p.stem for p in PACKAGE.glob("cases_*.py")}
    assert set(reference.CASES.modules) == families
    by_module = {}
    for entry in reference.CASES.entries():
        by_module.setdefault(entry.module.rsplit(".", 1)[-1], []).append(entry.name)
    assert set(by_module) == families, by_module
    assert reference.case_names() == [e.name for e in reference.CASES.entries()]


def test_every_case_names_a_section_of_the_document():
    for entry in reference.CASES.entries():
        assert entry.info["section"] in reference.SECTIONS, (entry.name, entry.info["section"])
    assert len(set(reference.SECTIONS)) == len(reference.SECTIONS)


def test_a_manifest_with_an_unknown_section_is_refused_naming_the_accepted_ones():
    with pytest.raises(fmt.ReferenceFormatError, match="not a section of") as info:
        fmt.manifest_header("x", "PPO2")
    assert "SAC with Automatically Adjusted Temperature" in str(info.value)
    assert fmt.manifest_header("x", "PPO")["section"] == "PPO"
