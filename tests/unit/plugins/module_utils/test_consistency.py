# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The X-Vault-Index state of a run: parsing, per-cluster merge, headers, hand-over between runs."""

from __future__ import annotations

import base64
import json
import random
import threading

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _consistency
from ansible_collections.certautopilot.vault.plugins.module_utils._consistency import ConsistencyIndex, format_index

# As OpenBao 2.7.2 sent it after a write (cluster id and raft index).
OPENBAO_HEADER = "eyJjbHVzdGVyIjoiZGM0ZTVhN2YtZjc4Zi0yMmY3LWY0MGEtZjQxNmNkZDFhMDZjIiwidmFsdWUiOiI0NSJ9"
CLUSTER = "dc4e5a7f-f78f-22f7-f40a-f416cdd1a06c"


def _sent(index: ConsistencyIndex) -> tuple[str, int] | None:
    parsed = _consistency.parse_index(index.headers().get(_consistency.INDEX_HEADER))
    return parsed and (parsed[0], parsed[1][0])


def test_parse_reads_the_real_openbao_header_and_round_trips():
    assert _consistency.parse_index(OPENBAO_HEADER) == (CLUSTER, (45,))
    assert _consistency.parse_index(format_index(CLUSTER, 45)) == (CLUSTER, (45,))


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "not base64!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1]").decode(),
        base64.b64encode(json.dumps({"cluster": "", "value": "3"}).encode()).decode(),
        base64.b64encode(json.dumps({"cluster": "c", "value": "-3"}).encode()).decode(),
        base64.b64encode(json.dumps({"cluster": "c", "value": True}).encode()).decode(),
        base64.b64encode(json.dumps({"cluster": "c"}).encode()).decode(),
    ],
)
def test_unreadable_values_are_ignored_and_send_nothing(value):
    index = ConsistencyIndex()
    index.record(value)
    index.seed(value)
    assert index.headers() == {}
    assert index.state == ""


def test_a_lower_index_received_later_never_lowers_the_state():
    index = ConsistencyIndex()
    index.record(format_index(CLUSTER, 50))
    index.record(format_index(CLUSTER, 47))
    assert _sent(index) == (CLUSTER, 50)
    assert index.headers()[_consistency.INCONSISTENT_HEADER] == "forward-active-node"


def test_indexes_are_merged_per_cluster_and_the_answering_cluster_is_sent():
    index = ConsistencyIndex()
    index.record(format_index("a", 90))
    index.record(format_index("b", 3))
    # Cluster a's 90 says nothing about cluster b's raft log.
    assert _sent(index) == ("b", 3)
    index.record(format_index("a", 10))
    assert _sent(index) == ("a", 90)


def test_state_hands_every_cluster_to_the_next_run():
    first = ConsistencyIndex()
    first.record(format_index("a", 90))
    first.record(format_index("b", 3))
    second = ConsistencyIndex(first.state)
    assert second.state == first.state
    assert _sent(second) == ("b", 3)
    # A seed merges: it never lowers what the run has seen itself.
    second.record(format_index("b", 8))
    second.seed(format_index("b", 5) + ",garbage")
    assert _sent(second) == ("b", 8)


def test_concurrent_answers_keep_the_highest_index():
    index = ConsistencyIndex()
    values = list(range(1, 2001))
    random.Random(1).shuffle(values)

    def record(part):
        for value in part:
            index.record(format_index(CLUSTER, value))

    threads = [threading.Thread(target=record, args=(values[start::8],)) for start in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _sent(index) == (CLUSTER, 2000)


@pytest.mark.parametrize(
    ("status", "body", "sent", "expected"),
    [
        (429, {"errors": []}, True, True),
        (412, {"errors": []}, True, True),
        (412, None, True, True),
        # Without an index in the request a 429 is a rate limit, and an error text is some other refusal.
        (429, {"errors": []}, False, False),
        (429, {"errors": ["rate limit quota exceeded"]}, True, False),
        (400, {"errors": []}, True, False),
    ],
)
def test_not_caught_up_only_for_an_empty_412_or_429_to_a_request_with_an_index(status, body, sent, expected):
    raw = json.dumps(body).encode() if body is not None else b""
    assert _consistency.not_caught_up(status, raw, sent_index=sent) is expected


def _vault_state(cluster: str, local: int, replicated: int) -> str:
    return base64.b64encode(f"v1:{cluster}:{local}:{replicated}:c2lnbmF0dXJl".encode()).decode()


def test_vault_enterprise_states_are_kept_as_received_and_only_replaced_by_newer_ones():
    index = ConsistencyIndex()
    first, newer, mixed = _vault_state("v", 10, 4), _vault_state("v", 12, 4), _vault_state("v", 11, 9)
    index.record(first)
    index.record(newer)
    assert index.headers()[_consistency.INDEX_HEADER] == newer
    # Behind in one index, ahead in the other: not newer, the signed value kept stays.
    index.record(mixed)
    assert index.headers()[_consistency.INDEX_HEADER] == newer
    assert _consistency.parse_index(_vault_state("v", 1, 2)) == ("v", (1, 2))
    assert _consistency.parse_index(base64.b64encode(b"v1:v:x:2:s").decode()) is None


def test_a_fence_asks_beyond_every_standby_until_a_fenced_answer_brings_an_index():
    index = ConsistencyIndex()
    index.fence()
    # Nothing known, nothing to fence: a server without indexes gets no header.
    assert index.headers() == {} and not index.fenced
    index.record(format_index(CLUSTER, 45))
    index.fence()
    assert _sent(index) == (CLUSTER, 45 + _consistency.FENCE_AHEAD)
    # An answer to a request sent before the fence does not lift it.
    index.record(format_index(CLUSTER, 46))
    assert index.fenced
    index.record(format_index(CLUSTER, 52), answers_fence=True)
    assert not index.fenced
    assert _sent(index) == (CLUSTER, 52)
    # The raised value is never kept: the state handed on is what the server said.
    assert index.state == format_index(CLUSTER, 52)
