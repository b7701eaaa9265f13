"""gbair's rooms point one way: no import cycle among its modules or its packages, and TracIn
(gbair.influence) does not lean on the trainer (gbair.train)."""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "gbair"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def lazy_exports(tree: ast.Module) -> set[ast.AST]:
    """The nodes of a module-level `__getattr__` (PEP 562): the root package's re-exports, imported on
    first attribute access, once every module has loaded; they are the top of the layering, not an edge."""
    return {node for top in tree.body if isinstance(top, ast.FunctionDef) and top.name == "__getattr__"
            for node in ast.walk(top)}


def imports_of(path: pathlib.Path) -> set[str]:
    """The gbair modules a file imports, anywhere in it (function-level imports count too, except the
    root package's lazy re-exports)."""
    found, tree = set(), ast.parse(path.read_text())
    lazy = lazy_exports(tree) if path == PACKAGE / "__init__.py" else set()
    for node in ast.walk(tree):
        if node in lazy:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "gbair"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gbair":
            for alias in node.names:  # `from gbair.x import y`: y is a module, or a name in gbair.x
                found.add(f"{node.module}.{alias.name}" if is_module(f"{node.module}.{alias.name}") else node.module)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def room(module: str) -> str:
    """gbair.models.t5 -> gbair.models; top-level modules are their own room."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else module


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one node (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_modules():
    edges = graph()
    assert len(edges) > 30 and "gbair.recovery.loop" in edges
    assert cycles(edges) == []


def test_no_import_cycle_among_packages():
    rooms: dict[str, set[str]] = {}
    for module, imported in graph().items():
        rooms.setdefault(room(module), set()).update(room(m) for m in imported if room(m) != room(module))
    assert cycles(rooms) == []


def test_influence_does_not_import_train_and_the_sweep_does_not_import_its_readers():
    edges = graph()
    for module, imported in edges.items():
        if module.startswith("gbair.influence"):
            assert not [m for m in imported if m.startswith("gbair.train")], module
    loop = edges["gbair.recovery.loop"]
    assert not [m for m in loop if m.startswith(("gbair.reports", "gbair.explain", "gbair.jobs"))]


def test_no_top_level_experiments_package():
    assert not (REPO / "experiments" / "__init__.py").exists()
    assert '"experiments"' not in (REPO / "setup.py").read_text()


def test_the_root_package_re_exports_lazily_and_imports_nothing_of_gbair():
    import gbair
    from gbair.recovery import cleaning

    assert gbair.find_label_issues is cleaning.find_label_issues
    assert graph()["gbair"] == set()  # at import time the package loads none of its modules
