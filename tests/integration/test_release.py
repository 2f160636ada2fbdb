"""The release tarball: `make build`, installed into an empty collections path, documents and pushes on its own.

What users get is the tarball, not this working tree: these tests build it
with the Makefile's own target, check what it holds (everything the
collection needs, none of the developer's caches and artefacts), install it
with ansible-galaxy into an empty directory and use only that install:
ansible-doc renders the module (doc fragments and all), the push playbook
shipped in the tarball delivers a certificate to the real server (role,
lookup, filter, modules and module_utils), and the execution environment
sample resolves the collection's Python requirements from it.

The tarball is built once and installed once for the module: the install is the
one the execution environment sample's galaxy stage runs (`ansible-galaxy
collection install -r requirements.yml` in the build context, which names the
tarball), so one install proves the sample and serves every test after it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import typing as t
from pathlib import Path

import pki
import pytest
import yaml
from leaks import assert_no_leak

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
TARBALL_NAME = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"
# What the collection needs at run time and what documents it; the tarball must hold each.
REQUIRED_MEMBERS = (
    "MANIFEST.json",
    "FILES.json",
    "README.md",
    "CHANGELOG.md",
    "changelogs/changelog.yaml",
    "meta/runtime.yml",
    "meta/execution-environment.yml",
    "requirements.txt",
    "plugins/doc_fragments/connection.py",
    "plugins/filter/cert_info.py",
    "plugins/filter/expiry_metrics.py",
    "extensions/eda/plugins/event_source/cert_expiry.py",
    "extensions/eda/rulebooks/renew_expiring.yml",
    "docs/eda.md",
    "plugins/lookup/cert_batch.py",
    "plugins/modules/vault_cert_info.py",
    "plugins/modules/vault_cert_push.py",
    "plugins/modules/vault_cert_retire.py",
    "plugins/modules/vault_cert_rollback.py",
    "plugins/modules/vault_health.py",
    "roles/cert_distribution/meta/argument_specs.yml",
    "roles/cert_distribution/tasks/main.yml",
    "playbooks/push.yml",
    "playbooks/rollback.yml",
    "playbooks/expiry_report.yml",
    "playbooks/templates/expiry_report.md.j2",
    "docs/guide.md",
    "docs/awx/credential_type.yml",
    "docs/execution-environment.yml",
)
# Developer caches and test artefacts: none may ship.
FORBIDDEN_PARTS = {
    ".venv", ".git", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".tox", ".nox", ".cache", ".ansible", "__pycache__",
    "build", "dist", "output",
}  # fmt: skip
FORBIDDEN_SUFFIXES = (".pyc", ".pyo", ".tar.gz", ".log")
# An unexpectedly large tarball means something that should be ignored got in.
MAX_TARBALL_BYTES = 512 * 1024


def _hermetic_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VAULT_", "BAO_", "ANSIBLE_"))}
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _run(command: list[str], *, timeout: float, **options: t.Any) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (``options`` as for subprocess.run: env, cwd), its output captured as text."""
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **options)  # noqa: S603


def _builder_create(definition: Path, context: Path, *, env: dict[str, str]) -> None:
    """``ansible-builder create``: the build context of an execution environment, no container runtime needed."""
    command = [str(BIN_DIR / "ansible-builder"), "create", "-f", str(definition), "--context", str(context)]
    _run_ok([*command, "--output-filename", "Containerfile"], env=env, timeout=120)


def _run_ok(command: list[str], *, timeout: float, **options: t.Any) -> subprocess.CompletedProcess[str]:
    """``_run``, asserting that the command exited 0 (its stdout and stderr the message if not)."""
    completed = _run(command, timeout=timeout, **options)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tarball `make build` writes (into a directory of the test's own)."""
    out = tmp_path_factory.mktemp("release")
    completed = _run_ok(["make", "--no-print-directory", "build", f"BUILD_DIR={out}"], cwd=REPO, timeout=600)
    path = out / TARBALL_NAME
    assert path.is_file(), f"make build wrote no {TARBALL_NAME}:\n{completed.stdout}"
    print(f"{path.name}: {path.stat().st_size} bytes")
    return path


@pytest.fixture(scope="module")
def ee_context(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/execution-environment.yml's build context, written by `ansible-builder create` (no container runtime).

    The sample takes the tarball from ../build, relative to itself: both are laid out that way here.
    """
    root = tmp_path_factory.mktemp("ee-sample")
    (root / "docs").mkdir()
    shutil.copy(REPO / "docs" / "execution-environment.yml", root / "docs")
    (root / "build").mkdir()
    shutil.copy(tarball, root / "build")
    context = root / "context"
    _builder_create(root / "docs" / "execution-environment.yml", context, env=_hermetic_env())
    return context


@pytest.fixture(scope="module")
def installed(ee_context: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty collections path with only the tarball installed into it, as the sample's galaxy stage does it.

    The image's galaxy stage runs `ansible-galaxy collection install -r requirements.yml` in the context's
    _build directory, whose requirements name the tarball the context holds.
    """
    collections = tmp_path_factory.mktemp("installed") / "collections"
    _run_ok(
        [
            str(BIN_DIR / "ansible-galaxy"),
            "collection",
            "install",
            "-r",
            "requirements.yml",
            "--collections-path",
            str(collections),
        ],
        cwd=ee_context / "_build",
        env=_hermetic_env(ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1", ANSIBLE_HOME=str(collections.parent / "ansible-home")),
        timeout=300,
    )
    return collections


def _members(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as archive:
        return [member.name.removeprefix("./") for member in archive.getmembers()]


def test_tarball_holds_everything_the_collection_needs(tarball):
    members = set(_members(tarball))

    missing = [name for name in REQUIRED_MEMBERS if name not in members]
    assert not missing, f"{tarball.name} lacks {missing}"
    for module_util in (REPO / "plugins" / "module_utils").glob("*.py"):
        assert f"plugins/module_utils/{module_util.name}" in members


def test_tarball_holds_no_caches_or_test_artefacts(tarball):
    shipped = _members(tarball)

    unwanted = [
        name for name in shipped if FORBIDDEN_PARTS & set(Path(name).parts) or name.endswith(FORBIDDEN_SUFFIXES)
    ]
    assert not unwanted, f"{tarball.name} ships {unwanted[:20]}"
    assert "changelogs/.plugin-cache.yaml" not in shipped
    assert not [name for name in shipped if name.split("/")[0] in ("tests", "scripts")], "tests/ and scripts/ ship"
    assert tarball.stat().st_size <= MAX_TARBALL_BYTES, f"{tarball.name} is {tarball.stat().st_size} bytes"


def _ansible_env(collections: Path, home: Path, **extra: str) -> dict[str, str]:
    return _hermetic_env(
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_CONFIG=str(home / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        **extra,
    )


@pytest.fixture(scope="module")
def ansible_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("ansible-home")
    (home / "ansible.cfg").write_text("[defaults]\n")
    return home


def test_ansible_doc_renders_the_module_from_the_installed_tarball(installed, ansible_home):
    env = _ansible_env(installed, ansible_home)
    completed = _run([str(BIN_DIR / "ansible-doc"), "certautopilot.vault.vault_cert_push"], env=env, timeout=120)

    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert not re.search(r"^\[(WARNING|ERROR)\]", output, re.MULTILINE), output
    # The module's file is the installed one, and the doc fragments' options were merged in.
    assert str(installed / "ansible_collections" / "certautopilot" / "vault" / "plugins" / "modules") in output
    for option in ("url", "ca_cert", "role_id", "secret_id", "jwt_file", "mount", "certificates"):
        assert re.search(rf"^[-=] {option}\b", output, re.MULTILINE), f"option {option} is not documented:\n{output}"
    assert "hvac" in output and "cryptography" in output  # the requirements, from the fragment


def test_push_playbook_from_the_installed_tarball_delivers_a_certificate(installed, ansible_home, bao, tmp_path):
    cn = "release.example.com"
    path = f"certs/{cn}"
    pki.write_leaf(tmp_path / "certs", cn)
    secret_id = bao.new_approle_secret_id("certs")
    extra_vars = {
        "cert_distribution_certs": [
            {
                "certificate_file": str(tmp_path / "certs" / "cert.pem"),
                "private_key_file": str(tmp_path / "certs" / "key.pem"),
                "chain_file": str(tmp_path / "certs" / "chain.pem"),
            }
        ],
    }
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(extra_vars))
    (tmp_path / "inventory.ini").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    env = _ansible_env(
        installed,
        ansible_home,
        VAULT_ADDR=bao.addr,
        VAULT_CACERT=bao.ca_cert,
        VAULT_ROLE_ID=bao.role_ids["certs"],
        VAULT_SECRET_ID=secret_id,
    )
    bao.api("DELETE", f"secret/metadata/{path}")

    try:
        # A collection's playbook runs by its FQCN, from the installed collection.
        completed = _run(
            [
                str(BIN_DIR / "ansible-playbook"),
                "certautopilot.vault.push",
                "-i",
                str(tmp_path / "inventory.ini"),
                "-e",
                f"@{tmp_path / 'vars.yml'}",
            ],
            env=env,
            cwd=tmp_path,
            timeout=300,
        )

        output = completed.stdout + completed.stderr
        assert completed.returncode == 0, output
        assert "1 of 1 certificate secret(s) changed" in output
        status, body = bao.api("GET", f"secret/data/{path}")
        assert status == 200, body
        assert body["data"]["data"]["certificate"] == (tmp_path / "certs" / "cert.pem").read_text()
        assert body["data"]["metadata"]["version"] == 1
        assert_no_leak([output], secret_id, (tmp_path / "certs" / "key.pem").read_text())
    finally:
        bao.api("DELETE", f"secret/metadata/{path}")


def test_execution_environment_sample_installs_the_tarball_and_its_python_requirements(
    ee_context: Path, installed: Path
) -> None:
    """docs/execution-environment.yml, through ansible-builder, up to what its container build would run.

    `ansible-builder create` writes the build context (``ee_context``); the image's galaxy stage runs
    `ansible-galaxy collection install -r requirements.yml` in the context's _build directory (``installed``),
    and its builder stage runs the introspection that collects the collections' Python requirements. Both run
    here without a container.
    """
    assert (ee_context / "_build" / "collections" / TARBALL_NAME).is_file(), "the sample does not ship this version"
    assert "ansible-galaxy collection install" in (ee_context / "Containerfile").read_text()
    manifest = json.loads((installed / "ansible_collections" / "certautopilot" / "vault" / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == GALAXY["version"]

    introspected = _run_ok(
        [sys.executable, str(ee_context / "_build" / "scripts" / "introspect.py"), "introspect", str(installed)],
        env=_hermetic_env(),
        timeout=120,
    )
    python_requirements = yaml.safe_load(introspected.stdout.split("---", 1)[1])["python"]
    declared = [
        line.split("#", 1)[0].strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]
    assert [entry.split("#", 1)[0].strip() for entry in python_requirements] == declared
    assert all(entry.endswith("# from collection certautopilot.vault") for entry in python_requirements)


def _requirement_lines(text: str) -> list[str]:
    """The requirement specifiers of a pip requirements file, comments and blank lines left out."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def test_meta_execution_environment_requirements_reach_the_build_context(tmp_path: Path) -> None:
    """meta/execution-environment.yml, read the way an execution environment build reads it; no tarball, no container.

    ansible-builder's introspection of a collections path holding this collection (the working tree, through a
    link) follows meta/execution-environment.yml to its Python requirements file, and `ansible-builder create`
    with that file as a definition's Python dependencies writes it into the build context, where the image's
    builder stage hands it to the same introspection (`--user-pip`) and pip.
    """
    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text(encoding="utf-8"))
    requirements_file = REPO / meta["dependencies"]["python"]
    declared = _requirement_lines(requirements_file.read_text(encoding="utf-8"))
    assert {re.split(r"[<>=!~ ]", line, maxsplit=1)[0] for line in declared} >= {"hvac", "requests", "cryptography"}
    collections = tmp_path / "collections"
    namespace_dir = collections / "ansible_collections" / GALAXY["namespace"]
    namespace_dir.mkdir(parents=True)
    (namespace_dir / GALAXY["name"]).symlink_to(REPO, target_is_directory=True)
    env = _hermetic_env()

    introspected = _run_ok(
        [str(BIN_DIR / "ansible-builder"), "introspect", str(collections)],
        env=env,
        timeout=120,
    )
    found = yaml.safe_load(introspected.stdout.split("---", 1)[1])["python"]
    assert [entry.split("#", 1)[0].strip() for entry in found] == declared
    collection = f"{GALAXY['namespace']}.{GALAXY['name']}"
    assert all(entry.endswith(f"# from collection {collection}") for entry in found)

    shutil.copy(requirements_file, tmp_path / "requirements.txt")
    definition = {
        "version": 3,
        "images": {"base_image": {"name": "quay.io/centos/centos:stream9"}},
        "dependencies": {
            "python_interpreter": {"package_system": "python3.11", "python_path": "/usr/bin/python3.11"},
            "ansible_core": {"package_pip": "ansible-core>=2.17,<2.20"},
            "ansible_runner": {"package_pip": "ansible-runner>=2.4,<2.5"},
            "python": "requirements.txt",
        },
    }
    (tmp_path / "execution-environment.yml").write_text(yaml.safe_dump(definition), encoding="utf-8")
    context = tmp_path / "context"
    _builder_create(tmp_path / "execution-environment.yml", context, env=env)
    assert _requirement_lines((context / "_build" / "requirements.txt").read_text(encoding="utf-8")) == declared
    containerfile = (context / "Containerfile").read_text(encoding="utf-8")
    assert "COPY _build/requirements.txt requirements.txt" in containerfile
    assert "introspect --user-pip=requirements.txt" in containerfile
