"""The management package's shape, read from its source with ``ast`` (nothing is imported): no
import loops, who is calling read from the request in one place only, and two front ends that do not
import each other."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "services.management"
SOURCE = ROOT / "services" / "management"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(name: str, path: Path) -> Iterator[str]:
    """Every name a module imports, at any depth (a function's own imports too), absolute."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of this package it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in _imported(name, path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target not in (name, PACKAGE):
                edges.add(target)
        graph[name] = edges
    return graph


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_the_finder_sees_a_loop() -> None:
    assert loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert loops({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    assert loops(import_graph()) == []


def test_who_is_calling_is_read_from_the_request_in_one_place() -> None:
    """The door attaches an Identity; nothing reads the caller out of the scope's untyped state."""
    readers = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            # scope["state"], scope.get("state") (not OAuth's "state" parameter, a word of its own)
            if isinstance(node, ast.Subscript) and ast.unparse(node).endswith("scope['state']"):
                readers.append(name)
            if isinstance(node, ast.Call) and ast.unparse(node).endswith("scope.get('state')"):
                readers.append(name)
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "state"
                and ast.unparse(node.value) == "request"
            ):
                readers.append(name)
    assert readers == []
    identity = (SOURCE / "auth" / "identity.py").read_text()
    assert "SCOPE_KEY" in identity
    users = [name for name, path in _modules().items() if "SCOPE_KEY" in path.read_text()]
    assert users == [f"{PACKAGE}.auth.identity"]


def _imports_of(prefix: str) -> set[str]:
    graph = import_graph()
    return {target for module, targets in graph.items() if module.startswith(prefix) for target in targets}


def test_the_two_front_ends_do_not_import_each_other() -> None:
    assert not {m for m in _imports_of(f"{PACKAGE}.api") if m.startswith(f"{PACKAGE}.console")}
    assert not {m for m in _imports_of(f"{PACKAGE}.console") if m.startswith(f"{PACKAGE}.api")}


def test_who_is_calling_depends_on_no_front_end() -> None:
    """The door is given how to render its refusals; roles and sign-in can grow in auth/ alone."""
    front = (f"{PACKAGE}.api", f"{PACKAGE}.console")
    assert not {m for m in _imports_of(f"{PACKAGE}.auth") if m.startswith(front)}


def test_below_the_front_ends_nothing_speaks_http() -> None:
    """The operations and the code below them raise domain errors (errors.py), never an HTTP status:
    only the front ends, the door and the reading of requests import the HTTP errors."""
    front = (f"{PACKAGE}.api", f"{PACKAGE}.console", f"{PACKAGE}.auth", f"{PACKAGE}.inputs")
    speakers = set()
    for name, path in _modules().items():
        if name.startswith(front):
            continue
        if "shared.errors" in set(_imported(name, path)) or "starlette" in path.read_text():
            speakers.add(name)
    assert speakers <= {f"{PACKAGE}.app", f"{PACKAGE}.__main__"}, speakers  # the factory, the server


def test_each_console_page_shares_only_the_frame_and_the_forms() -> None:
    graph = import_graph()
    console = f"{PACKAGE}.console"
    pages = ("sign_in", "codes", "new_code", "code", "scans", "design")
    for name in pages:
        shared = {m for m in graph[f"{console}.{name}"] if m.startswith(f"{console}.")}
        assert shared <= {f"{console}.frame", f"{console}.forms"}, name
