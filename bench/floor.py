"""The floor of the benchmark: the same delivery with hvac in one plain Python process.

Logs in once with AppRole, then for each certificate reads the current version
of its secret and, when the data differs, writes it with check-and-set. No
Ansible, no PEM parsing, no validation, no diff: the least work that gives the
same result on the server. Reads the items from the JSON file that the
benchmark also gives the module (``{"bench_items": [{path, certificate,
private_key, chain}, ...]}``), builds the same four fields, and prints one line
of JSON with its own timings.

    VAULT_SECRET_ID=... python bench/floor.py --url URL --ca-cert CA --role-id ID --items items.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import hvac
from hvac.exceptions import InvalidPath


def payload(item: dict) -> dict:
    return {
        "certificate": item["certificate"],
        "private_key": item["private_key"],
        "chain": item["chain"],
        "fullchain": item["certificate"] + item["chain"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca-cert", required=True)
    parser.add_argument("--role-id", required=True)
    parser.add_argument("--mount", default="secret")
    parser.add_argument("--items", required=True, help="JSON file with bench_items")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    with open(args.items, encoding="utf-8") as handle:
        items = json.load(handle)["bench_items"]
    client = hvac.Client(url=args.url, verify=args.ca_cert)
    client.auth.approle.login(role_id=args.role_id, secret_id=os.environ["VAULT_SECRET_ID"])
    kv = client.secrets.kv.v2
    loop_started = time.perf_counter()
    written = 0
    for item in items:
        data = payload(item)
        try:
            current = kv.read_secret_version(path=item["path"], mount_point=args.mount, raise_on_deleted_version=True)
            version = current["data"]["metadata"]["version"]
            current_data = current["data"]["data"]
        except InvalidPath:
            version, current_data = 0, None
        if current_data != data:
            kv.create_or_update_secret(path=item["path"], secret=data, cas=version, mount_point=args.mount)
            written += 1
    finished = time.perf_counter()
    json.dump(
        {
            "items": len(items),
            "written": written,
            "setup_seconds": round(loop_started - started, 4),
            "loop_seconds": round(finished - loop_started, 4),
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
