"""A/B timing of vault_cert_push variants: the module alone, in process, interleaved, min of k.

For trying a change to plugins/ before proposing it: copy the collection (at
least galaxy.yml, meta/ and plugins/) to a scratch directory, change the copy,
and compare it with the unchanged copy (or the repository):

    .venv/bin/python bench/ab.py --n 1000 --repeat 5 base=/tmp/v0 fix=/tmp/v1

Each variant runs main() of vault_cert_push in a fresh bench-venv Python
(bench/ab_child.py) against one local OpenBao server: a first run into a path
prefix of its own (every secret new), then a second run of the same batch
(every secret unchanged). Variants alternate within each repetition, so that
a load that comes and goes hits them alike; the minimum of the repetitions is
the figure to compare, as it is the one least disturbed by other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "tests" / "support")]

from bao import ProvisionedBao  # noqa: E402
from run import REPO, make_inputs  # noqa: E402


def link_collection(root: Path, target: Path) -> Path:
    link = root / "ansible_collections" / "certautopilot" / "vault"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(target.absolute(), target_is_directory=True)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="NAME=PATH of a collection copy")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--bench-python", default=str(REPO / "build" / "bench-venv" / "bin" / "python"))
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "bench-ab")
    args = parser.parse_args(argv)
    variants = dict(variant.split("=", 1) for variant in args.variants)

    args.workdir.mkdir(parents=True, exist_ok=True)
    inputs = make_inputs(args.workdir / "inputs", args.n, "ec")
    roots = {name: link_collection(args.workdir / f"collections-{name}", Path(path)) for name, path in variants.items()}
    server = ProvisionedBao.start_dev(args.workdir / "bao")
    timings: dict[str, dict[str, list[dict]]] = {name: {"first": [], "second": []} for name in variants}
    try:
        server.provision()
        base_args = {
            "url": server.addr,
            "ca_cert": server.ca_cert,
            "role_id": server.role_ids["certs"],
            "secret_id": server.new_approle_secret_id("certs"),
        }
        for rep in range(args.repeat):
            for name in variants:
                items = inputs.items(f"certs/ab-{name}-{rep}-{time.time_ns()}", args.n)
                args_file = args.workdir / f"args-{name}.json"
                args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**base_args, "certificates": items}}))
                for run in ("first", "second"):
                    completed = subprocess.run(  # noqa: S603
                        [
                            args.bench_python,
                            str(Path(__file__).with_name("ab_child.py")),
                            str(roots[name]),
                            str(args_file),
                        ],
                        capture_output=True,
                        text=True,
                        check=False,
                        env={
                            key: value
                            for key, value in os.environ.items()
                            if not key.startswith(("VAULT_", "ANSIBLE_"))
                        },
                    )
                    try:
                        report = json.loads(completed.stdout.strip().splitlines()[-1])
                    except (ValueError, IndexError):
                        report = {"failed": True, "msg": (completed.stdout + completed.stderr)[-500:]}
                    expected = run == "first"
                    if report.get("failed") or report.get("changed") is not expected:
                        print(f"{name} {run}: unexpected answer: {report}", file=sys.stderr)
                        return 1
                    timings[name][run].append(report)
                    print(
                        f"rep {rep} {name:>10} {run:<6} wall {report['wall']:7.3f} s  cpu {report['cpu']:7.3f} s  "
                        f"load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
    finally:
        server.stop()

    print(f"\nN={args.n}, {args.repeat} repetitions: min (median) seconds of main()")
    print(f"{'variant':>10}  {'first wall':>16}  {'first cpu':>16}  {'second wall':>16}  {'second cpu':>16}")
    for name in variants:
        cells = []
        for run in ("first", "second"):
            for key in ("wall", "cpu"):
                values = [report[key] for report in timings[name][run]]
                cells.append(f"{min(values):7.3f} ({statistics.median(values):6.3f})")
        print(f"{name:>10}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
