"""The declared Python requirements are exactly the third-party libraries that plugins/ imports.

requirements.txt is what meta/execution-environment.yml hands to ansible-builder and what a user installs
on the host that runs the modules; a library imported but not declared breaks an execution environment,
and one declared but not imported is dead weight in it.
"""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
# Provided by ansible-core itself (ansible) or by the collection (ansible_collections).
NOT_THIRD_PARTY = {"__future__", "ansible", "ansible_collections"}


def declared_requirements(path: Path, *, included: bool = False) -> dict[str, Requirement]:
    """The requirements of a file; with ``included``, also those of the files it includes (``-r other.txt``)."""
    requirements = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if included and line.startswith("-r "):
            requirements.update(declared_requirements(path.parent / line[3:].strip(), included=True))
        # Options such as "-r requirements.txt" name no requirement themselves.
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            requirements[canonicalize_name(requirement.name)] = requirement
    return requirements


def imported_top_level_modules(root: Path) -> dict[str, set[str]]:
    """Top-level module name -> the files under root that import it (absolute imports only)."""
    imported: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                imported.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return imported


def third_party_distributions(root: Path) -> dict[str, set[str]]:
    """Distribution name (canonical) -> files importing it, for every import that is neither stdlib nor Ansible."""
    providers = packages_distributions()
    distributions: dict[str, set[str]] = {}
    for module, files in imported_top_level_modules(root).items():
        if module in NOT_THIRD_PARTY or module in sys.stdlib_module_names:
            continue
        assert module in providers, f"{module} (imported by {sorted(files)}) is installed by no distribution here"
        for distribution in providers[module]:
            distributions.setdefault(canonicalize_name(distribution), set()).update(files)
    return distributions


def test_requirements_txt_declares_exactly_what_plugins_import():
    declared = set(declared_requirements(REPO / "requirements.txt"))
    imported = third_party_distributions(REPO / "plugins")

    undeclared = set(imported) - declared
    unused = declared - set(imported)
    assert not undeclared, {name: sorted(imported[name]) for name in undeclared}
    assert not unused, f"declared but imported nowhere in plugins/: {sorted(unused)}"


def test_declared_ranges_admit_the_versions_the_tests_pin():
    declared = declared_requirements(REPO / "requirements.txt")
    pinned = {}
    for name, requirement in declared_requirements(REPO / "requirements-dev.txt", included=True).items():
        specifiers = list(requirement.specifier)
        if len(specifiers) == 1 and specifiers[0].operator == "==":
            pinned[name] = specifiers[0].version

    for name, requirement in declared.items():
        assert name in pinned, f"requirements-dev.txt pins no version of {name}: the range is untested"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} is outside {requirement}"


def test_every_declared_requirement_has_a_lower_bound():
    for name, requirement in declared_requirements(REPO / "requirements.txt").items():
        assert any(spec.operator in (">=", "==", "~=") for spec in requirement.specifier), f"{name} has no lower bound"


def test_execution_environment_metadata_points_at_requirements_txt():
    metadata = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text(encoding="utf-8"))

    assert metadata["version"] == 1
    assert metadata["dependencies"] == {"python": "requirements.txt"}
    assert (REPO / metadata["dependencies"]["python"]).is_file()
