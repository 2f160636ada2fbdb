"""vault_cert_push's arguments and runs, as the push, layout and ownership tests build them.

``runner`` is either harness: ``modules`` (the module's main() in-process) or ``ansible`` (a playbook run);
both scan every run for the secrets it was given and the tokens it used.
"""

from __future__ import annotations

import json
import typing as t
import uuid
from pathlib import Path

from pki import Issued, bundle

MODULE = "vault_cert_push"
FQCN = "certautopilot.vault.vault_cert_push"


def approle(bao, role: str = "certs") -> dict[str, str]:
    """An AppRole login as ``role`` with a fresh secret_id (no url: add the connection)."""
    return {"auth_method": "approle", "role_id": bao.role_ids[role], "secret_id": bao.new_approle_secret_id(role)}


def push(
    runner,
    args: dict[str, t.Any],
    *,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    secrets: t.Sequence[str] = (),
    **runner_options: t.Any,
):
    """Run vault_cert_push once; the run keeps its audit entries (``run.requests``)."""
    return runner.run_module(
        MODULE, args, check=check, diff=diff, verbosity=verbosity, secrets=secrets, **runner_options
    )


def push_tasks(
    ansible,
    tasks: t.Mapping[str, t.Mapping[str, t.Any]],
    *,
    keywords: t.Mapping[str, t.Mapping[str, t.Any]] | None = None,
    playbook_dir: Path | None = None,
    **run_options: t.Any,
):
    """Run several vault_cert_push tasks (ignore_errors) in one playbook; task results by task name.

    ``keywords`` are more task keywords by task name (``check_mode``, ``module_defaults``); ``playbook_dir`` is
    where the playbook lies, whose ``files/`` a relative ``private_key_file`` is found in; ``run_options`` go to
    ``run_playbook`` (``verbosity``, ``diff``, ``extra_vars_args``, ``secrets``).
    """
    play = {
        "name": "Pushes under test",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"name": name, FQCN: dict(args), "ignore_errors": True, **(keywords or {}).get(name, {})}
            for name, args in tasks.items()
        ],
    }
    playbook = (playbook_dir or ansible.workdir) / f"push-tasks-{uuid.uuid4().hex}.yml"
    playbook.write_text(json.dumps([play], indent=2))
    playbook.chmod(0o600)
    try:
        run = ansible.run_playbook(playbook, **run_options)
    finally:
        playbook.unlink()
    results = {task.task: task for task in run.tasks}
    assert set(results) == set(tasks), run.output
    return run, results


def single(path: str, leaf: Issued, *chain: Issued, **options: t.Any) -> dict[str, t.Any]:
    """The arguments of a single push of ``leaf`` (and its key) with ``chain``."""
    args: dict[str, t.Any] = {"path": path, "certificate": leaf.cert_pem, "private_key": leaf.key_pem}
    if chain:
        args["chain"] = bundle(*chain)
    args.update(options)
    return args


def expected_data(leaf: Issued, *chain: Issued, with_key: bool = True) -> dict[str, str]:
    """What a push with default fields stores: canonical PEM, fullchain = certificate + chain."""
    chain_pem = bundle(*chain)
    data = {"certificate": leaf.cert_pem, "fullchain": leaf.cert_pem + chain_pem}
    if chain:
        data["chain"] = chain_pem
    if with_key:
        data["private_key"] = leaf.key_pem
    return data
