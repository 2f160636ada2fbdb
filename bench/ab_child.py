"""Run vault_cert_push once, in this process, and print what it cost (for bench/ab.py).

    python bench/ab_child.py COLLECTIONS_PATH ARGS_FILE

ARGS_FILE holds ``{"ANSIBLE_MODULE_ARGS": {...}}``, as Ansible hands it to a
module. The module is imported from COLLECTIONS_PATH (which holds
ansible_collections/certautopilot/vault), then its main() runs as under
AnsiballZ, and one JSON line reports the wall and CPU seconds of main() alone
(start-up and imports excluded: they are the same for every variant) and the
module's own answer (changed, failed, msg).
"""

import contextlib
import io
import json
import sys
import time


def main() -> int:
    collections_path, args_file = sys.argv[1:3]
    sys.path.insert(0, collections_path)
    from ansible.module_utils import basic

    with open(args_file, "rb") as handle:
        basic._ANSIBLE_ARGS = handle.read()
    basic._ANSIBLE_PROFILE = "legacy"
    from ansible_collections.certautopilot.vault.plugins.modules import vault_cert_push

    output = io.StringIO()
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(output), contextlib.suppress(SystemExit):
        vault_cert_push.main()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    text = output.getvalue()
    try:
        answer = json.loads(text[text.index("{") :])
    except ValueError:
        answer = {"failed": True, "msg": f"no JSON answer: {text[:300]!r}"}
    report = {
        "wall": round(wall, 4),
        "cpu": round(cpu, 4),
        "changed": answer.get("changed"),
        "failed": bool(answer.get("failed")),
        "msg": str(answer.get("msg", ""))[:300],
        "output_bytes": len(text),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
