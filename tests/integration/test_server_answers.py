# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What vault_cert_push reports when the server refuses or answers oddly: a write every answer of which refuses it
is not written (or of unknown outcome when the answers say nothing), and a read answered 200 without a KV v2
version is an error, never "no such secret".

Against a real OpenBao behind FaultProxy; the module in-process (``modules``).
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from fault_proxy import FaultProxy
from kv_requests import kv_writes
from pki import make_chain
from push_runs import approle, single

PUSH = "vault_cert_push"


def unique_path(topic: str) -> str:
    return f"certs/answers-{topic}-{uuid.uuid4().hex[:8]}.example.com"


@pytest.mark.parametrize(
    ("answer", "reported_as"),
    [({"status": 412}, "not_written"), ({"status": 429}, "not_written"), ({"status": 504}, "outcome_unknown")],
    ids=["412-every-time", "429-every-time", "504-every-time"],
)
def test_write_refused_by_every_answer_is_reported_for_what_the_server_holds(
    bao, modules, vault_conn, answer, reported_as
):
    base = unique_path("refused")
    paths = [f"{base}/{name}" for name in ("a", "b", "c")]
    batch = []
    for path in paths:
        chain = make_chain(path.removeprefix("certs/"))
        batch.append(single(path, chain.leaf, chain.intermediate))
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{re.escape(paths[1])}$", times=None, **answer)

        run = modules.run_module(
            PUSH,
            {
                "url": proxy.url,
                "ca_cert": vault_conn["ca_cert"],
                **approle(bao),
                "certificates": batch,
                "retries": 1,
                "concurrency": 1,
            },
        )

    assert run.failed
    assert run.result["failed_path"] == paths[1]
    assert [result["path"] for result in run.result["results"]] == paths[:1]
    if reported_as == "not_written":
        assert run.result["not_written"] == paths[1:] and run.result["outcome_unknown"] == []
        assert "shows it was not written" in run.msg, run.msg
    else:
        assert run.result["not_written"] == paths[2:] and run.result["outcome_unknown"] == [paths[1]]
        assert "may or may not have been applied" in run.msg, run.msg
    assert [len(bao.kv_version_numbers(path)) for path in paths] == [1, 0, 0]


def test_read_answered_200_without_a_version_is_an_error_not_a_missing_secret(bao, modules, vault_conn):
    path = unique_path("not-vault")
    chain = make_chain(path.removeprefix("certs/"))
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("GET", rf"^secret/data/{re.escape(path)}$", status=200, times=None)

        run = modules.run_module(
            PUSH,
            {
                "url": proxy.url,
                "ca_cert": vault_conn["ca_cert"],
                **approle(bao),
                **single(path, chain.leaf, chain.intermediate),
            },
        )

    assert run.failed and "without a KV v2 version" in run.msg, run.msg
    assert kv_writes(run.requests) == []


@pytest.mark.parametrize("status", [400, 500], ids=["400-refused", "500-outcome-unknown"])
def test_an_error_that_echoes_a_batch_write_never_shows_its_key(bao, modules, vault_conn, status):
    """A gateway's error quoting the request body holds each key as JSON escapes it (line breaks as \\n), where
    masking the key whole cannot find it: the client takes what it sent out of every error list it reads."""
    path = unique_path("echo")
    chain = make_chain(path.removeprefix("certs/"))
    item = single(path, chain.leaf, chain.intermediate)
    echoed = json.dumps({"data": {"certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem}})
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", r"^secret/data/", status=status, times=None, errors=(f"blocked by policy: {echoed}",))

        # The harness scans the answer for the key's lines (certificates[0].private_key), JSON-escaped ones included.
        run = modules.run_module(
            PUSH,
            {"url": proxy.url, "ca_cert": vault_conn["ca_cert"], **approle(bao), "certificates": [item], "retries": 1},
        )

    assert run.failed and "blocked by policy" in run.msg, run.msg
    assert bao.kv_version_numbers(path) == []
