# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Batches: input order, and what a stopped batch reports."""

from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _batch
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import OutcomeUnknown, VaultCertError


def test_batch_result_keeps_input_order_and_one_diff_per_item():
    results = [
        {"changed": False, "path": "a", "diff": {"before": 1}},
        {"changed": True, "path": "b", "diff": {"before": 2}},
    ]
    outcome = _batch.run_result(results, batch=True)
    assert outcome["changed"] is True
    assert [r["path"] for r in outcome["results"]] == ["a", "b"]
    assert outcome["diff"] == [{"before": 1}, {"before": 2}]


def test_single_result_is_returned_in_its_own_shape():
    assert _batch.run_result([{"changed": True, "path": "a"}], batch=False) == {"changed": True, "path": "a"}


def test_stopped_batch_names_the_failed_item_and_every_item_after_it():
    stopped = _batch.stopped(
        {0: {"changed": True, "path": "a", "diff": {}}, 1: VaultCertError("permission denied")},
        ["a", "b", "c"],
        noun="certificate",
    )
    assert stopped.result["not_written"] == ["b", "c"]
    assert stopped.result["outcome_unknown"] == []
    assert stopped.result["results"] == [{"changed": True, "path": "a"}]
    assert "certificate 2 of 3, b" in str(stopped) and "Not written: b, c" in str(stopped)


def test_stopped_batch_keeps_an_unknown_outcome_apart_from_the_unwritten():
    stopped = _batch.stopped(
        {
            0: {"changed": False, "path": "a"},
            1: OutcomeUnknown("answer lost; the write may or may not have been applied"),
        },
        ["a", "b", "c"],
        noun="secret",
    )
    assert stopped.result["not_written"] == ["c"]
    assert stopped.result["outcome_unknown"] == ["b"]
    assert "secret 2 of 3" in str(stopped) and "may or may not have been applied" in str(stopped)


def test_run_each_stops_at_the_first_failure_of_a_batch():
    def operate(path):
        if path == "b":
            raise VaultCertError("refused")
        return {"changed": True, "path": path}

    with pytest.raises(VaultCertError) as error:
        _batch.run_each(["a", "b", "c"], operate, paths=["a", "b", "c"], batch=True, noun="secret")
    assert error.value.result["results"] == [{"changed": True, "path": "a"}]
    assert error.value.result["failed_path"] == "b"


def test_run_each_reraises_a_single_failure_as_it_is():
    def operate(path):
        raise VaultCertError("refused")

    with pytest.raises(VaultCertError, match="^refused$"):
        _batch.run_each(["a"], operate, paths=["a"], batch=False, noun="secret")


def test_repeated_paths_are_refused_naming_the_option():
    with pytest.raises(VaultCertError, match="'a': it appears twice in secrets"):
        _batch.refuse_repeated_paths(["a", "b", "a"], option="secrets")


# -- with concurrency ---------------------------------------------------------------------------


def test_a_pool_returns_every_result_in_input_order_whatever_order_they_finish_in():
    def operate(index):
        time.sleep(0.002 * (20 - index))  # the first items finish last
        return {"changed": False, "path": str(index)}

    paths = [str(index) for index in range(20)]
    results = _batch.run_each(list(range(20)), operate, paths=paths, batch=True, noun="x", concurrency=4)
    assert [result["path"] for result in results] == [str(index) for index in range(20)]


def test_a_pool_never_runs_more_than_its_size_at_once():
    running, most = [0], [0]
    lock = threading.Lock()

    def operate(index):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.005)
        with lock:
            running[0] -= 1
        return {"changed": False, "path": str(index)}

    _batch.run_each(list(range(30)), operate, paths=[str(i) for i in range(30)], batch=True, noun="x", concurrency=3)
    assert most[0] == 3


def test_after_a_failure_the_pool_hands_out_nothing_more_and_lets_the_running_items_finish():
    started = []
    release = threading.Event()

    def operate(index):
        started.append(index)
        if index == 1:
            raise VaultCertError("refused")
        if index in (0, 2):
            release.wait(1)  # in flight while item 1 fails
        return {"changed": True, "path": str(index)}

    def fail_then_release(index):
        try:
            return operate(index)
        finally:
            if index == 1:
                release.set()

    paths = [str(i) for i in range(10)]
    with pytest.raises(VaultCertError) as error:
        _batch.run_each(list(range(10)), fail_then_release, paths=paths, batch=True, noun="secret", concurrency=3)
    assert sorted(started) == [0, 1, 2]
    assert [result["path"] for result in error.value.result["results"]] == ["0", "2"]
    assert error.value.result["failed_path"] == "1"
    assert error.value.result["not_written"] == ["1"] + [str(i) for i in range(3, 10)]
    assert error.value.result["outcome_unknown"] == []


def test_several_failures_in_flight_are_all_reported_unknown_ones_apart():
    def operate(index):
        if index == 0:
            raise OutcomeUnknown("answer lost")
        if index == 1:
            raise VaultCertError("refused")
        return {"changed": True, "path": str(index)}

    with pytest.raises(VaultCertError) as error:
        _batch.run_each(list(range(2)), operate, paths=["a", "b"], batch=True, noun="secret", concurrency=2)
    assert error.value.result["failed_path"] == "a"
    assert error.value.result["outcome_unknown"] == ["a"]
    assert error.value.result["not_written"] == ["b"]
    assert "Secret 2, b, failed too: refused" in str(error.value)


def test_a_single_item_failing_in_a_pool_raises_its_own_error():
    def operate(index):
        raise OutcomeUnknown("answer lost")

    with pytest.raises(OutcomeUnknown):
        _batch.run_each([0], operate, paths=["a"], batch=False, noun="secret", concurrency=8)


def test_a_bug_in_one_worker_is_an_unknown_outcome_and_the_other_items_keep_their_report():
    def operate(index):
        if index == 0:
            raise KeyError("certificate")
        if index == 1:
            time.sleep(0.05)  # in flight while item 0 fails
        return {"changed": True, "path": str(index)}

    paths = [str(i) for i in range(6)]
    with pytest.raises(VaultCertError) as error:
        _batch.run_each(list(range(6)), operate, paths=paths, batch=True, noun="secret", concurrency=2)
    assert error.value.result["outcome_unknown"] == ["0"]
    assert "unexpected error (KeyError)" in str(error.value)
    assert [result["path"] for result in error.value.result["results"]] == ["1"]
    assert error.value.result["not_written"] == ["2", "3", "4", "5"]
