"""The package's import picture stays true: no import circle, no import from a lower folder to a higher one.

Every `import` / `from ... import` in posebh_cli (including those inside functions) is read with `ast`. Layers, top
first; a module may import only from layers below its own (and from its own layer), never upwards:

    cli -> commands -> engine -> methods -> inference -> evaluation -> models -> data -> recipe -> skeletons
        -> files -> errors

plus two sideways bans the linear order cannot say: methods import neither inference nor evaluation (running a
model to score it is a command's job). `posebh_cli/__init__.py` (the public `load_model`) sits above everything.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "posebh_cli"
LAYERS = ("posebh_cli", "cli", "commands", "engine", "methods", "inference", "evaluation", "models", "data", "recipe",
          "skeletons", "files", "errors")  # top first; "posebh_cli" is the package's own __init__
FORBIDDEN = {("methods", "inference"), ("methods", "evaluation")}


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its file (functions included)."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import sub` imports the module pkg.sub; `from mod import name` imports mod
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("posebh_cli"):
                    deps.add(target)
        graph[name] = deps
    return graph


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def folder_of(module: str, graph: dict[str, set[str]]) -> str:
    """The package (folder) a module lives in; a package's __init__ belongs to its own folder."""
    is_package = any(other.startswith(module + ".") for other in graph)
    return module if is_package else module.rpartition(".")[0]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(graph: dict[str, set[str]]) -> list[str]:
    """Every circle (between modules and between folders) and every upward or banned import, one line each."""
    out = [f"module circle: {' <-> '.join(c)}" for c in circles(graph)]
    folders: dict[str, set[str]] = {}
    for module, deps in graph.items():
        mine = folder_of(module, graph)
        folders.setdefault(mine, set()).update(
            f for f in (folder_of(d, graph) for d in deps)
            if f != mine and not mine.startswith(f + ".") and not f.startswith(mine + "."))  # not nesting
    out += [f"folder circle: {' <-> '.join(c)}" for c in circles(folders)]
    for module, deps in sorted(graph.items()):
        mine = layer_of(module)
        for dep in sorted(deps):
            theirs = layer_of(dep)
            if LAYERS.index(theirs) < LAYERS.index(mine):
                out.append(f"upward import: {module} ({mine}) imports {dep} ({theirs})")
            elif (mine, theirs) in FORBIDDEN:
                out.append(f"banned import: {module} ({mine}) imports {dep} ({theirs})")
    return out


def test_every_module_has_a_layer():
    assert {layer_of(m) for m in import_graph()} <= set(LAYERS)


def test_no_circle_and_no_upward_import():
    assert problems(import_graph()) == []


def test_the_check_catches_a_bad_picture():
    bad = {
        "posebh_cli.models.a": {"posebh_cli.engine.b"},        # upward, and a circle with engine.b
        "posebh_cli.engine.b": {"posebh_cli.models.a"},
        "posebh_cli.methods.c": {"posebh_cli.inference.d"},    # sideways ban
        "posebh_cli.inference.d": set(),
        "posebh_cli.data.e": {"posebh_cli.data.f"},            # a circle inside one folder
        "posebh_cli.data.f": {"posebh_cli.data.e"},
    }
    found = problems(bad)
    assert "module circle: posebh_cli.engine.b <-> posebh_cli.models.a" in found
    assert "module circle: posebh_cli.data.e <-> posebh_cli.data.f" in found
    assert "folder circle: posebh_cli.engine <-> posebh_cli.models" in found
    assert "upward import: posebh_cli.models.a (models) imports posebh_cli.engine.b (engine)" in found
    assert "banned import: posebh_cli.methods.c (methods) imports posebh_cli.inference.d (inference)" in found
    assert problems({"posebh_cli.engine.b": {"posebh_cli.models.a"}, "posebh_cli.models.a": set()}) == []


def test_the_parser_reads_imports_inside_functions(tmp_path):
    root = tmp_path / "posebh_cli"
    (root / "models").mkdir(parents=True)
    (root / "engine").mkdir()
    for init in (root / "__init__.py", root / "models" / "__init__.py", root / "engine" / "__init__.py"):
        init.write_text("")
    (root / "engine" / "loop.py").write_text("def f():\n    from posebh_cli.models import net\n")
    (root / "models" / "net.py").write_text("def g():\n    from ..engine.loop import f\n")
    graph = import_graph(root)
    assert graph["posebh_cli.engine.loop"] == {"posebh_cli.models.net"}
    assert graph["posebh_cli.models.net"] == {"posebh_cli.engine.loop"}
    assert any(p.startswith("upward import: posebh_cli.models.net") for p in problems(graph))
