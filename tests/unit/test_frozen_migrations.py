"""The migrations that install the figures' SQL hold it as literal text.

A migration whose SQL is composed (f-strings, ``str.format``, ``%``) or borrowed from
another migration's module changes what it installs when that code changes, long
after databases ran it: 0009 once built its trigger functions by loading 0008 and
patching its output. Read as source, never imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

VERSIONS = Path(__file__).resolve().parents[2] / "migrations" / "versions"
FROZEN = (
    "0008_video_counts.py",
    "0009_video_counts_by_mall.py",
    "0010_video_figure.py",
    "0012_event_outbox.py",
    "0013_tags.py",
    "0014_shares.py",
    "0015_key_registration_lock.py",
    "0017_exports.py",
    "0016_scoped_search.py",
    "0019_video_tags_listing.py",
    "0018_reprocess_requests.py",
    "0020_audit_retention.py",
    "0021_analytics.py",
    "0022_analytics_rollups.py",
    "0023_video_tags_stay_in_their_mall.py",
)
IMPORTABLE = {"alembic", "sqlalchemy"}


def _tree(name: str) -> ast.Module:
    return ast.parse((VERSIONS / name).read_text(), filename=name)


@pytest.mark.parametrize("name", FROZEN)
def test_no_sql_is_composed(name):
    composed = []
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.JoinedStr):
            composed.append(f"f-string at line {node.lineno}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"format", "replace", "join"}
        ):
            composed.append(f".{node.func.attr}() at line {node.lineno}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
            sides = (node.left, node.right)
            if any(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides):
                composed.append(f"string operator at line {node.lineno}")
    assert composed == []


@pytest.mark.parametrize("name", FROZEN)
def test_no_other_migration_is_read(name):
    imported = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0] or ".")
    assert imported <= IMPORTABLE
    source = (VERSIONS / name).read_text()
    others = [other.name for other in VERSIONS.glob("0*.py") if other.name != name]
    assert [other for other in others if other in source] == []


@pytest.mark.parametrize("name", FROZEN)
def test_every_statement_run_is_a_literal(name):
    """``op.execute`` is given a string literal or a module constant bound to one (or a
    loop over a tuple of them)."""
    tree = _tree(name)
    literal = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and _is_literal(node.value)
    }
    loops = {
        node.target.id: node.iter
        for node in ast.walk(tree)
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name)
    }
    executed = [
        node.args[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "execute"
    ]
    assert executed
    for argument in executed:
        if isinstance(argument, ast.Name) and argument.id in loops:
            argument = loops[argument.id]
        assert (
            _is_literal(argument)
            or (isinstance(argument, ast.Name) and argument.id in literal)
            or (
                isinstance(argument, ast.Tuple)
                and all(isinstance(e, ast.Name) and e.id in literal for e in argument.elts)
            )
        ), ast.unparse(argument)


def _is_literal(node: ast.expr) -> bool:
    """A string constant (adjacent literals are one constant), or a tuple of them."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Tuple):
        return all(_is_literal(element) for element in node.elts)
    return False
