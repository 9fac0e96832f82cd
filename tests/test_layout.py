"""The code's layout holds: dsp/ is pure (no gRPC, no I/O, nothing of service/), and no
module of service/ imports, even lazily or for types only, one that imports it back."""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path) -> set[str]:
    """Every module of this project ``path`` imports, wherever the import statement is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # a submodule, maybe
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def project_graph() -> dict[str, set[str]]:
    paths = [p for d in ("service", "dsp") for p in (ROOT / d).rglob("*.py")
             if "api" not in p.relative_to(ROOT).parts]
    modules = {module_name(p): p for p in paths}
    return {m: {t for t in imports(p) if t in modules and t != m} for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_no_module_imports_one_that_imports_it_back():
    graph = project_graph()
    assert "service.web.viewer" in graph and "service.server" in graph  # found the code
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_dsp_is_pure_computation():
    allowed = {"numpy", "scipy", "webrtcvad", "math", "dataclasses", "typing", "collections",
               "functools", "itertools", "os", "enum", "__future__", "abc", "bisect",
               "collections.abc", "heapq", "operator", "warnings", "zlib", "struct"}
    for path in (ROOT / "dsp").rglob("*.py"):
        for target in imports(path):
            top = target.split(".")[0]
            assert top in ("dsp", "") or target in allowed or top in allowed, (path, target)
