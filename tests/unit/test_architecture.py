"""The import graph keeps the layers the folders name: no circle, no arrow upwards.

Every ``import`` in the project's code counts, including those inside functions: a lazy
import is still a dependency a reader has to follow. Layers, lowest first:

    schemas -> handlers -> settings/logs -> adapters -> bootstrap -> runtime, tasks
    -> ops, dev -> bench

``worker.client`` is for callers and may import ``schemas`` only. ``bench`` is on top:
it may import any public name of the product, and nothing of the product imports it;
a bench that reached for an underscored name would measure, and break with, code the
product is free to change.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "handlers", "tasks", "worker", "bench")
PRODUCT = ("schemas", "handlers", "tasks", "worker", "celeryconfig")
TOP_MODULES = ("celeryconfig",)
# Third-party libraries that belong behind the ports, never in the video service.
INFRASTRUCTURE = ("celery", "kombu", "sqlalchemy", "psycopg", "boto3", "botocore", "redis")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {name: ROOT / f"{name}.py" for name in TOP_MODULES}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    names: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # Each name resolves to the submodule it is, or else to ``base`` itself.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path, name):
            # "from worker.adapters import redis" names a module; "from x import y" a symbol.
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def layer(module: str) -> int:
    if module == "schemas" or module.startswith("schemas."):
        return 0
    if module.startswith("handlers"):
        return 1
    if module in ("worker.settings", "worker.logs"):
        return 2
    if module.startswith("worker.adapters"):
        return 3
    if module == "worker.bootstrap":
        return 4
    if module.startswith(("worker.runtime", "tasks")) or module == "celeryconfig":
        return 5
    if module == "bench" or module.startswith("bench."):
        return 7
    return 6  # worker.ops, worker.dev, the worker package's own shim


def test_the_graph_covers_every_layer():
    layers = {layer(name) for name in _graph()}
    assert layers == {0, 1, 2, 3, 4, 5, 6, 7}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph, as a path that ends where it starts, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in done:
            return None
        if node in visiting:
            return visiting[visiting.index(node) :] + [node]
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            if (cycle := visit(target)) is not None:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if (cycle := visit(node)) is not None:
            return cycle
    return None


def test_there_is_no_import_circle():
    assert find_cycle(_graph()) is None


def test_a_circle_would_be_found():
    # The check must be able to fail: the bootstrap <-> celery_app circle it replaced.
    graph = {"worker.bootstrap": {"worker.runtime.app"}, "worker.runtime.app": {"worker.bootstrap"}}
    assert find_cycle(graph) == ["worker.bootstrap", "worker.runtime.app", "worker.bootstrap"]


def test_no_arrow_points_up_a_layer():
    upward = [
        f"{source} ({layer(source)}) -> {target} ({layer(target)})"
        for source, targets in _graph().items()
        for target in targets
        if layer(target) > layer(source) and target != "worker"
    ]
    assert upward == []


def test_the_video_service_imports_no_infrastructure():
    offenders = []
    for name, path in _modules().items():
        if layer(name) > 1:
            continue
        for imported in _imports(path, name):
            if imported.split(".")[0] in INFRASTRUCTURE:
                offenders.append(f"{name} imports {imported}")
    assert offenders == []


def test_the_client_depends_on_schemas_only():
    project = {target.split(".")[0] for target in _graph()["worker.client"]}
    assert project <= {"schemas"}


def _is_product(module: str) -> bool:
    return module.split(".")[0] in PRODUCT


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_the_product_never_imports_the_bench():
    offenders = [
        f"{source} imports {target}"
        for source, targets in _graph().items()
        if _is_product(source)
        for target in targets
        if layer(target) == 7
    ]
    assert offenders == []


def bench_private_uses(tree: ast.AST) -> list[str]:
    """Underscored names a bench takes from the product: imported (``from worker.x import
    _y``, ``import worker._x``), or read off a product module or a name imported from one
    (``store._client``)."""
    found: list[str] = []
    from_product: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_product(alias.name):
                    found += [alias.name for part in alias.name.split(".") if _private(part)]
                    from_product.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and not node.level:
            module = node.module or ""
            if _is_product(module):
                if any(_private(part) for part in module.split(".")):
                    found.append(module)
                for alias in node.names:
                    if _private(alias.name):
                        found.append(f"{module}.{alias.name}")
                    from_product.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in from_product
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_the_bench_uses_no_private_name_of_the_product():
    offenders = [
        f"{name}: {use}"
        for name, path in _modules().items()
        if layer(name) == 7
        for use in bench_private_uses(ast.parse(path.read_text(), str(path)))
    ]
    assert offenders == []


def test_a_private_use_would_be_found():
    tree = ast.parse(
        "from worker.adapters.s3.store import _client\n"
        "import handlers\n"
        "handlers._with_purge_after\n"
        "from bench.harness import _run\n"
    )
    assert bench_private_uses(tree) == [
        "worker.adapters.s3.store._client",
        "handlers._with_purge_after",
    ]
