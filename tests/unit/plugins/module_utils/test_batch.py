# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Batches: input order, and what a stopped batch reports."""

from __future__ import annotations

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
        VaultCertError("permission denied"),
        ["a", "b", "c"],
        1,
        [{"changed": True, "path": "a", "diff": {}}],
        noun="certificate",
    )
    assert stopped.result["not_written"] == ["b", "c"]
    assert stopped.result["outcome_unknown"] == []
    assert stopped.result["results"] == [{"changed": True, "path": "a"}]
    assert "certificate 2 of 3, b" in str(stopped) and "Not written: b, c" in str(stopped)


def test_stopped_batch_keeps_an_unknown_outcome_apart_from_the_unwritten():
    stopped = _batch.stopped(
        OutcomeUnknown("answer lost; the write may or may not have been applied"), ["a", "b", "c"], 1, [], noun="secret"
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
