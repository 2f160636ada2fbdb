"""The floor of the benchmark: the same delivery with hvac in one plain Python process.

Logs in once with AppRole, then for each certificate reads the current version
of its secret and, when the data differs, writes it with check-and-set. No
Ansible, no PEM parsing, no validation, no diff: the least work that gives the
same result on the server. Takes the two extra-vars files the module's
playbook gets: the server's (bench_url, bench_ca_cert, bench_role_id,
bench_secret_id) and the batch's (bench_items: [{path, certificate,
private_key, chain}, ...]).

    python bench/floor.py SERVER_VARS_JSON ITEMS_JSON
"""

from __future__ import annotations

import json
import sys

import hvac
from hvac.exceptions import InvalidPath

MOUNT = "secret"


def main(server_vars: str, items_file: str) -> int:
    with open(server_vars, encoding="utf-8") as handle:
        server = json.load(handle)
    with open(items_file, encoding="utf-8") as handle:
        items = json.load(handle)["bench_items"]
    client = hvac.Client(url=server["bench_url"], verify=server["bench_ca_cert"])
    client.auth.approle.login(role_id=server["bench_role_id"], secret_id=server["bench_secret_id"])
    kv = client.secrets.kv.v2
    written = 0
    for item in items:
        # The same four fields as vault_cert_push and the peer write.
        data = {
            "certificate": item["certificate"],
            "private_key": item["private_key"],
            "chain": item["chain"],
            "fullchain": item["certificate"] + item["chain"],
        }
        try:
            current = kv.read_secret_version(path=item["path"], mount_point=MOUNT, raise_on_deleted_version=True)
            version, current_data = current["data"]["metadata"]["version"], current["data"]["data"]
        except InvalidPath:
            version, current_data = 0, None
        if current_data != data:
            kv.create_or_update_secret(path=item["path"], secret=data, cas=version, mount_point=MOUNT)
            written += 1
    print(f"{written} of {len(items)} written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
