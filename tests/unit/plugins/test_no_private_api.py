# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""No plugin reaches into another library's private (underscore) names.

Every ``x._name`` in plugins/ must be a name the collection defines itself, or one of the members that
Ansible's plugin base classes give their subclasses to work with (ActionBase, LookupBase).
"""

from __future__ import annotations

import ast
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[3] / "plugins"
# What ActionBase and LookupBase hand to the plugins built on them, and AnsibleModule's diff mode, which modules
# read as community.crypto's do (AnsibleModule has no public name for it).
PLUGIN_BASE_MEMBERS = frozenset(
    {
        "_task",
        "_loader",
        "_templar",
        "_execute_module",
        "_find_needle",
        "_supports_check_mode",
        "_supports_async",
        "_diff",
    }
)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def own_names(trees: list[ast.AST]) -> set[str]:
    """Underscore names the collection itself defines: functions, methods, attributes, class and module names."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute):
                names.add(node.target.attr)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[-1])
    return {name for name in names if is_private(name)}


def private_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """Every ``x._name`` read, and every ``getattr(x, "_name")``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            found.append((node.lineno, node.attr))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "hasattr", "setattr"}
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and is_private(node.args[1].value)
        ):
            found.append((node.lineno, node.args[1].value))
    return found


def test_plugins_use_no_private_name_of_ansible_or_any_other_library():
    files = sorted(PLUGINS.rglob("*.py"))
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in files}
    allowed = own_names(list(trees.values())) | PLUGIN_BASE_MEMBERS
    offenders = [
        f"{path.relative_to(PLUGINS.parent)}:{line}: {name}"
        for path, tree in trees.items()
        for line, name in private_uses(tree)
        if name not in allowed
    ]
    assert offenders == []


def test_the_check_finds_a_private_ansible_name():
    tree = ast.parse("def f(module, value):\n    return module._verbosity, getattr(value, '_strip_unsafe', None)\n")
    assert [name for _line, name in private_uses(tree) if name not in own_names([tree])] == [
        "_verbosity",
        "_strip_unsafe",
    ]
