"""The code's layout holds: dsp/ is pure (no gRPC, no I/O, nothing of service/), no module
of service/ imports, even lazily or for types only, one that imports it back, and what a
running server imports (service/runtime/) reaches neither the offline tools, nor the demo,
nor the client."""
from __future__ import annotations

import ast
import json
import pathlib
import re
import subprocess
import sys

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
    assert {"service.runtime.web.viewer", "service.runtime.server"} <= set(graph)  # found the code
    assert cycles(graph) == []


def reachable(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


# What `speakerswitch serve` may load of this project: the runtime, the generated modules
# (skipped by the graph) and dsp. The CLI itself is the layer over everything.
OUTSIDE_RUNTIME = ("service.tools", "service.demo", "service.client", "service.cli")


def test_the_runtime_imports_nothing_of_the_tools_the_demo_or_the_client():
    graph = project_graph()
    runtime = {m for m in graph if m.startswith("service.runtime.")}
    assert {"service.runtime.server", "service.runtime.rooms"} <= runtime  # found the code
    assert "service.tools.replay" in graph and "service.demo.live" in graph
    strays = sorted(m for m in reachable(graph, runtime) if m.startswith(OUTSIDE_RUNTIME))
    assert strays == []


def test_the_reachability_check_sees_a_lazy_import():
    graph = {"service.runtime.a": {"service.runtime.b"}, "service.runtime.b": {"service.tools.x"},
             "service.tools.x": set()}
    assert "service.tools.x" in reachable(graph, {"service.runtime.a"})


def test_a_served_process_loads_no_tool_and_no_scipy():
    """What the serve path really imports (including what the graph cannot see, such as an
    import by a string): the CLI, the server and every module it starts lazily."""
    probe = ("import json, sys\n"
             "import service.cli, service.runtime.server, service.runtime.rtp_server, "
             "service.runtime.web.viewer, service.runtime.fanout\n"
             "print(json.dumps(sorted(sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, check=True)
    loaded = json.loads(r.stdout)
    assert "service.runtime.rooms" in loaded  # the probe did load the server
    assert [m for m in loaded if m.startswith(OUTSIDE_RUNTIME[:3]) or m == "scipy"] == []


def test_the_code_paths_the_docs_name_exist():
    """A path of the repository named in DEVELOPERS.md or docs/ (`service/...`, `dsp/...`,
    `clients/...`, `benchmarks/...`, `tests/...`, ...) is there, so a move updates the pages
    that point at it."""
    pages = [ROOT / "DEVELOPERS.md", ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    top = "service|dsp|clients|benchmarks|tests|deploy|examples|proto"
    named = {(page.name, path) for page in pages
             for path in re.findall(rf"\b((?:{top})/[\w/.*-]*\w)", page.read_text())}
    assert ("DEVELOPERS.md", "service/runtime/rooms/registry.py") in named  # found the table
    assert ("DEVELOPERS.md", "clients/python/speakerswitch_client/stream.py") in named
    wheel_only = {"service/api/speakerswitch/v1/speakerswitch.proto"}  # setup.py copies it
    missing = sorted((page, path) for page, path in named
                     if not any(ROOT.glob(path)) and path not in wheel_only)
    assert missing == []


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
