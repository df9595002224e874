"""The package is layered: every module imports only from lower layers (function-level imports
included), and no chain of imports leads back to where it started.

Layers, bottom to top (the data flow text → tokens → windows → batches → model → statistics →
result → views):

    0  kernels, errors, metrics, _version   the ops and the definitions everything shares
    1  options                              option checks shared by every path
    2  text, viz, sampling                  text → tokens → windows; views of result-like data;
                                            samplers on log-probabilities (torch only)
    3  results                              ScoreResult, CorpusResult (render through viz)
    4  engine, remote                       batches → model → statistics; servers' answers
    5  models, testing                      loading, the default model, get_model; mock servers
    6  corpus                               resumable, data-parallel corpus runs
    7  widgets                              the explorer app
    8  api                                  every entry point with its full signature
    9  lightlens (the package root)         re-exports api
    10 cli (11: __main__, which runs it)    the command line
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = {"lightlens": ROOT / "lightlens", "lightlens.kernels": ROOT / "kernels"}
LAYERS = {
    "kernels": 0, "errors": 0, "metrics": 0, "_version": 0,
    "options": 1,
    "text": 2, "viz": 2, "sampling": 2,
    "results": 3,
    "engine": 4, "remote": 4,
    "models": 5, "testing": 5,
    "corpus": 6,
    "widgets": 7,
    "api": 8,
    "": 9,
    "cli": 10, "bench": 10,
    "__main__": 11,
}


def modules() -> dict[str, Path]:
    """Every module of the installed package: dotted name → file."""
    found = {}
    for prefix, folder in TREES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The lightlens modules ``name`` imports anywhere in its file (not only at the top)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out.update(t for t in targets if t == "lightlens" or t.startswith("lightlens."))
    return {t for t in out if t in known} - {name}


def layer_of(module: str) -> tuple[str, int]:
    part = module.split(".")[1] if module.count(".") else ""
    return part, LAYERS[part]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer():
    unplaced = sorted({m.split(".")[1] for m in modules() if m.count(".")} - set(LAYERS))
    assert not unplaced, f"give these a layer in tests/test_layers.py: {unplaced}"


def test_imports_go_only_downward():
    upward = []
    for name, targets in graph().items():
        pkg, level = layer_of(name)
        for t in targets:
            tpkg, tlevel = layer_of(t)
            if tpkg != pkg and tlevel >= level:
                upward.append(f"{name} (layer {level}) imports {t} (layer {tlevel})")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(g[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " → ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_the_walk_sees_function_level_imports():
    g = graph()
    assert "lightlens.models.scorer" in g["lightlens.corpus.run"]  # imported inside score_corpus
    assert "lightlens.viz.heatmap" in g["lightlens.results.score_result"]  # inside a method
