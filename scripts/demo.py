# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make demo`: the collection's whole cycle against a real server, then its version history.

1. A server: a local OpenBao dev server on a free loopback port (scripts/devbao.py: the sample policy, AppRole),
   unless VAULT_ADDR is set - then that server, with VAULT_ROLE_ID and VAULT_SECRET_ID (or VAULT_TOKEN),
   VAULT_CACERT and VAULT_NAMESPACE from the environment, and a path of its own under certs/.
2. A demo CA, a certificate for demo.example.com and its renewal (tests/support/pki.py).
3. playbooks/demo.yml: health -> push (changed) -> push again (unchanged) -> push the renewal (version 2)
   -> roll back (version 3 = version 1's data). The playbook gets the connection from VAULT_* variables, as an
   AWX credential would give it.
4. The secret's version history, read back from the server, as a table.
5. The local server is stopped (on another server, the demo secret is deleted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "support"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import devbao  # noqa: E402
import hvac  # noqa: E402
import pki  # noqa: E402

MOUNT = "secret"
COMMON_NAME = "demo.example.com"


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def collections_root(workdir: Path) -> Path:
    """A directory in which Ansible finds this working tree as certautopilot.vault."""
    root = workdir / "collections"
    link = root / "ansible_collections" / "certautopilot" / "vault"
    link.parent.mkdir(parents=True)
    link.symlink_to(REPO_ROOT, target_is_directory=True)
    sys.path.insert(0, str(root))
    return root


def write_certificates(workdir: Path) -> tuple[Path, Path]:
    """A demo CA (root and intermediate), a leaf and its renewal: same CN and CA, new key and serial."""
    root = pki.make_ca("CertAutoPilot Demo Root CA", key=pki.new_key())
    intermediate = pki.make_intermediate(root, "CertAutoPilot Demo Intermediate CA", key=pki.new_key())
    directories = []
    for name in ("certificate", "renewed"):
        leaf = pki.make_leaf(intermediate, COMMON_NAME, sans=(COMMON_NAME, f"www.{COMMON_NAME}"))
        directory = workdir / name
        directory.mkdir()
        (directory / "cert.pem").write_text(leaf.cert_pem)
        key = directory / "key.pem"
        key.touch(mode=0o600)
        key.write_text(leaf.key_pem)
        (directory / "chain.pem").write_text(intermediate.cert_pem)
        print(f"{directory}/cert.pem: CN={COMMON_NAME}, serial {leaf.cert.serial_number:x}")
        directories.append(directory)
    return directories[0], directories[1]


def client_for(env: t.Mapping[str, str]) -> hvac.Client:
    """An hvac client logged in the way the playbook's modules log in (AppRole, else a token)."""
    verify: bool | str = env.get("VAULT_CACERT") or True
    if env.get("VAULT_SKIP_VERIFY", "").lower() in ("1", "true", "yes"):
        verify = False
    client = hvac.Client(url=env["VAULT_ADDR"], verify=verify, namespace=env.get("VAULT_NAMESPACE") or None)
    if env.get("VAULT_ROLE_ID") and env.get("VAULT_SECRET_ID"):
        client.auth.approle.login(role_id=env["VAULT_ROLE_ID"], secret_id=env["VAULT_SECRET_ID"])
    else:
        client.token = env["VAULT_TOKEN"]
    return client


def print_history(client: hvac.Client, path: str) -> None:
    from ansible_collections.certautopilot.vault.plugins.module_utils._certs import certificate_info

    kv = client.secrets.kv.v2
    versions = kv.read_secret_metadata(path=path, mount_point=MOUNT)["data"]["versions"]
    rows = []
    first_with_data: dict[str, int] = {}
    for number in sorted(versions, key=int):
        data = kv.read_secret_version(path=path, version=int(number), mount_point=MOUNT, raise_on_deleted_version=True)
        fields = data["data"]["data"]
        digest = json.dumps(fields, sort_keys=True)
        same_as = first_with_data.setdefault(digest, int(number))
        info = certificate_info(fields["certificate"])
        rows.append(
            (
                number,
                versions[number]["created_time"][:19].replace("T", " "),
                info["serial"][:23] + ("..." if len(info["serial"]) > 23 else ""),
                info["not_after"],
                info["fingerprint_sha256"][:16] + "...",
                ", ".join(sorted(fields)),
                f"version {same_as}" if same_as != int(number) else "-",
            )
        )
    headers = ("version", "created (UTC)", "serial", "not after", "sha256", "fields", "same data as")
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = "+" + "+".join("-" * (width + 2) for width in widths) + "+"
    print(f"Version history of {MOUNT}/{path} (read back from the server):")
    print(line)
    print("| " + " | ".join(str(cell).ljust(width) for cell, width in zip(headers, widths)) + " |")
    print(line)
    for row in rows:
        print("| " + " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + " |")
    print(line)


def run_playbook(env: dict[str, str], extra_vars: dict[str, t.Any], workdir: Path) -> int:
    vars_file = workdir / "demo-vars.json"
    vars_file.write_text(json.dumps(extra_vars, indent=2))
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        str(REPO_ROOT / "playbooks" / "demo.yml"),
        "-e",
        f"@{vars_file}",
    ]
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command, env=env, cwd=REPO_ROOT, check=False).returncode  # noqa: S603


def main() -> int:
    external = bool(os.environ.get("VAULT_ADDR"))
    with tempfile.TemporaryDirectory(prefix="certautopilot-demo-") as tmp:
        workdir = Path(tmp)
        server = None
        try:
            env = {key: value for key, value in os.environ.items() if not key.startswith(("VAULT_", "BAO_"))}
            extra_vars: dict[str, t.Any] = {}
            if external:
                banner(f"Using the server at {os.environ['VAULT_ADDR']} (VAULT_ADDR)")
                env.update({key: value for key, value in os.environ.items() if key.startswith("VAULT_")})
                if not (env.get("VAULT_ROLE_ID") and env.get("VAULT_SECRET_ID")) and not env.get("VAULT_TOKEN"):
                    print("Set VAULT_ROLE_ID and VAULT_SECRET_ID (AppRole), or VAULT_TOKEN.", file=sys.stderr)
                    return 2
                if not env.get("VAULT_ROLE_ID"):
                    extra_vars["cert_distribution_vault"] = {"auth_method": "token"}
                # A path of its own, so that the versions start at 1 and nothing of yours is touched.
                prefix = f"certs/certautopilot-demo-{time.strftime('%Y%m%d-%H%M%S')}"
            else:
                banner("Starting a local OpenBao dev server (set VAULT_ADDR to use another server)")
                server, credentials = devbao.start_server(workdir / "bao")
                print(f"{server.addr}: KV v2 at {MOUNT}/, policy {devbao.POLICY_NAME} (the sample policy),")
                print(f"AppRole role {devbao.APPROLE_ROLE} with that policy")
                env.update(
                    VAULT_ADDR=credentials["addr"],
                    VAULT_CACERT=credentials["ca_cert"],
                    VAULT_ROLE_ID=credentials["role_id"],
                    VAULT_SECRET_ID=credentials["secret_id"],
                )
                prefix = "certs"
            path = f"{prefix}/{COMMON_NAME}"

            banner("Generating a demo CA, a certificate and its renewal")
            certificate_dir, renewed_dir = write_certificates(workdir)
            extra_vars.update(
                demo_certificate_dir=str(certificate_dir),
                demo_renewed_certificate_dir=str(renewed_dir),
                demo_path_prefix=prefix,
            )

            banner("Running playbooks/demo.yml")
            collections = collections_root(workdir)
            env.update(
                ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(
                    filter(None, [str(collections), os.environ.get("ANSIBLE_COLLECTIONS_PATH")])
                ),
                ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                ANSIBLE_LOCALHOST_WARNING="false",
                ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
            )
            rc = run_playbook(env, extra_vars, workdir)

            banner("Version history")
            client = client_for(env)
            try:
                print_history(client, path)
                if external:
                    client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=MOUNT)
                    print(f"Deleted the demo secret {MOUNT}/{path} and its history.")
            finally:
                if env.get("VAULT_ROLE_ID"):
                    client.auth.token.revoke_self()
            if rc != 0:
                print(f"\nplaybooks/demo.yml failed (exit code {rc})", file=sys.stderr)
            return rc
        finally:
            if server is not None:
                banner("Stopping the local OpenBao dev server")
                server.stop()
                print("stopped; nothing is left running")


if __name__ == "__main__":
    raise SystemExit(main())
