"""The floor of the benchmark: the same delivery with hvac in one plain Python process.

Logs in once with AppRole, then for each certificate reads the current version
of its secret and, when the data differs, writes it with check-and-set. No
Ansible, no PEM parsing, no validation, no diff: the least work that gives the
same result on the server. Takes the two extra-vars files the module's
playbook gets: the server's (bench_url, bench_ca_cert, bench_role_id,
bench_secret_id) and the batch's (bench_items: [{path, certificate,
private_key, chain}, ...]).

With --threads N (the distance run's floor, against the module's concurrency)
the items are dealt out to N threads, round robin, each with its own hvac
Client and so its own requests session and kept-alive connection (the first
thread's is the one that logged in); they share that one login's token, as
the module's pool does.

    python bench/floor.py [--threads N] SERVER_VARS_JSON ITEMS_JSON
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor

import hvac
from hvac.exceptions import InvalidPath

MOUNT = "secret"


def push(client: hvac.Client, items: list[dict]) -> int:
    """Reads each item's secret and writes it with check-and-set when it differs; returns how many were written."""
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
            metadata = current["data"]["metadata"]
            version, current_data = metadata["version"], current["data"]["data"]
        except InvalidPath:
            version, current_data = 0, None
        if current_data != data:
            kv.create_or_update_secret(path=item["path"], secret=data, cas=version, mount_point=MOUNT)
            written += 1
    return written


def push_in_threads(server: dict, client: hvac.Client, items: list[dict], threads: int) -> int:
    """push() in threads: the logged-in client serves the first, each other thread gets a client with its token."""
    others = [
        hvac.Client(url=server["bench_url"], verify=server["bench_ca_cert"], token=client.token)
        for _thread in range(threads - 1)
    ]
    shares = [items[index::threads] for index in range(threads)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(push, [client, *others], shares))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="items in flight at once (default 1)")
    parser.add_argument("server_vars")
    parser.add_argument("items_file")
    args = parser.parse_args()
    with open(args.server_vars, encoding="utf-8") as handle:
        server = json.load(handle)
    with open(args.items_file, encoding="utf-8") as handle:
        items = json.load(handle)["bench_items"]
    client = hvac.Client(url=server["bench_url"], verify=server["bench_ca_cert"])
    client.auth.approle.login(role_id=server["bench_role_id"], secret_id=server["bench_secret_id"])
    # One thread: the items in the main thread, as the floor always did.
    written = push_in_threads(server, client, items, args.threads) if args.threads > 1 else push(client, items)
    print(f"{written} of {len(items)} written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
