"""The layer rules of docs/architecture.md, checked on the source: no import cycle among the project's modules,
each layer imports only its own and lower layers, only the adapters import ray / wandb / wandb_workspaces, and no
project module is imported inside a function (that hides a cycle) except where the allowlist says why."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# lowest first; a module may import modules of its own layer or of a lower one
LAYERS = [
    ("strategies",),
    ("harness.config",),
    ("harness.results", "harness.data"),
    ("harness.train",),
    ("harness.reporting",),
    ("harness.adapters",),
    ("harness",),          # the command-line entry points at the top of the package, and the package itself
]
# results and data share a layer but never import each other
APART = [("harness.results", "harness.data"), ("harness.data", "harness.results")]
ONLY_ADAPTERS = ("ray", "wandb", "wandb_workspaces")
# project imports inside a function, with the reason (heavy optional package behind them, never a cycle)
LAZY_ALLOWED = {
    ("harness.sweep", "harness.adapters"): "the adapters import ray (seconds): not for --help / --dry-run",
}
SHIMS = {"harness/adapters/shims.py", "harness/train/shims.py"}


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted([*ROOT.glob("harness/**/*.py"), *ROOT.glob("strategies/**/*.py")]):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def imports(path: Path, name: str) -> list[tuple[str, bool]]:
    """(imported module, inside a function?) for every import statement."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    nested = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(fn)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in nested) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.append((base, id(node) in nested))
            found += [(f"{base}.{a.name}", id(node) in nested) for a in node.names]
    return found


def layer_of(module: str) -> int:
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = i, len(prefix)
    assert best is not None, f"{module} is in no layer of docs/architecture.md"
    return best


def project_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m, _ in imports(p, name) if m in mods and m != name} for name, p in mods.items()}


def test_no_import_cycles():
    graph = project_graph()
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):                      # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_every_import_goes_down_the_layers():
    breaks = []
    for name, targets in project_graph().items():
        for target in targets:
            if layer_of(target) > layer_of(name):
                breaks.append(f"{name} -> {target}")
            for a, b in APART:
                if name.startswith(a) and target.startswith(b):
                    breaks.append(f"{name} -> {target} (same layer, kept apart)")
    assert not breaks, "layer rule broken (docs/architecture.md):\n" + "\n".join(sorted(breaks))


def test_only_adapters_import_ray_and_wandb():
    breaks = []
    for name, path in modules().items():
        if name.startswith("harness.adapters"):
            continue
        for module, _ in imports(path, name):
            if module.split(".")[0] in ONLY_ADAPTERS:
                breaks.append(f"{name} imports {module}")
    assert not breaks, breaks


def test_no_project_import_hides_inside_a_function():
    found = []
    for name, path in modules().items():
        for module, lazy in imports(path, name):
            if lazy and module.split(".")[0] in ("harness", "strategies"):
                if not any(name == a and module.startswith(b) for a, b in LAZY_ALLOWED):
                    found.append(f"{name}: {module}")
    assert not found, f"imports inside functions (move the shared piece down a layer instead): {found}"


@pytest.mark.parametrize("needle", ["_private", "._local_tuner", "_detect_and_apply_job_inputs",
                                    "._attn_implementation", "_to_model("])
def test_private_library_state_only_in_the_named_shims(needle):
    hits = [str(p.relative_to(ROOT)) for p in ROOT.glob("harness/**/*.py")
            if needle in p.read_text() and str(p.relative_to(ROOT)) not in SHIMS]
    assert not hits, f"{needle!r} outside the shims: {hits}"


def test_the_layer_rules_catch_a_break(tmp_path, monkeypatch):
    """The checker itself can fail: a train module importing ray or an adapter is reported."""
    fake = tmp_path / "harness" / "train"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("import ray\nfrom harness.adapters.ray import tune\n")
    found = imports(fake / "bad.py", "harness.train.bad")
    assert ("ray", False) in found and layer_of("harness.adapters.ray.tune") > layer_of("harness.train.bad")
