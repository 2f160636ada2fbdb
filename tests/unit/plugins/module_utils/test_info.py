# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's pure logic: days left, the status of each secret, the report, fail_on, the request checks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pki
import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _certs, _info
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._kv2 import SecretVersion

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)
ALL_KEYS = {
    "path",
    "version",
    "updated_time",
    "managed",
    "owner",
    "field",
    "status",
    "reason",
    "days_left",
    *_certs.SUMMARY_KEYS,
}


def leaf(*, not_before=None, not_after=None, cn="www.example.com"):
    return pki.make_leaf(
        None,
        cn,
        sans=(cn,),
        not_before=not_before or NOW - timedelta(days=10),
        not_after=not_after or NOW + timedelta(days=90),
    )


def secret(data, *, version=1, managed=False, **state):
    custom = {"managed_by": "certautopilot.vault"} if managed else None
    return SecretVersion(
        version=version, data=data, custom_metadata=custom, created_time="2030-05-01T00:00:00.1Z", **state
    )


def assess(found, *, fields=("certificate",), expiring_within=30, path="certs/x"):
    return _info.assess_secret(path, found, fields=fields, expiring_within=expiring_within, now=NOW)


# -- days_left and the validity status -----------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [
        (timedelta(days=30, hours=23), 30),
        (timedelta(days=1), 1),
        (timedelta(hours=23, minutes=59), 0),
        (timedelta(seconds=1), 0),
        (timedelta(seconds=-1), -1),
        (timedelta(days=-2, hours=1), -2),
    ],
)
def test_days_left_is_the_floor_of_the_remaining_days(remaining, expected):
    assert _info.days_left(NOW + remaining, NOW) == expected


@pytest.mark.parametrize(
    ("not_before", "not_after", "expected"),
    [
        (-10, 90, "ok"),
        (-10, 31, "ok"),
        (-10, 30.5, "expiring"),
        (-10, 30, "expiring"),
        (-10, 0.001, "expiring"),
        (-100, -0.001, "expired"),
        (1, 90, "not_yet_valid"),
    ],
)
def test_validity_status_against_expiring_within_30(not_before, not_after, expected):
    status = _info.validity_status(
        NOW + timedelta(days=not_before), NOW + timedelta(days=not_after), now=NOW, expiring_within=30
    )
    assert status == expected


def test_expired_wins_over_not_yet_valid_for_an_inverted_validity_period():
    status = _info.validity_status(NOW + timedelta(days=1), NOW - timedelta(days=1), now=NOW, expiring_within=30)
    assert status == "expired"


def test_expiring_within_zero_marks_only_the_last_day():
    assert _info.validity_status(NOW, NOW + timedelta(hours=5), now=NOW, expiring_within=0) == "expiring"
    assert _info.validity_status(NOW, NOW + timedelta(days=1, hours=1), now=NOW, expiring_within=0) == "ok"


# -- one secret's entry --------------------------------------------------------------------------


def test_a_valid_certificate_is_ok_with_the_push_summary_and_no_value_of_the_secret():
    issued = leaf()
    found = assess(secret({"certificate": issued.cert_pem, "private_key": issued.key_pem}, version=3, managed=True))

    assert set(found) == ALL_KEYS
    summary = _certs.summarise_certificate(issued.cert)
    assert {key: found[key] for key in _certs.SUMMARY_KEYS} == {key: summary[key] for key in _certs.SUMMARY_KEYS}
    assert found["status"] == "ok" and found["reason"] is None
    assert (found["version"], found["managed"], found["field"], found["days_left"]) == (3, True, "certificate", 90)
    assert found["updated_time"] == "2030-05-01T00:00:00.1Z"
    assert "PRIVATE KEY" not in repr(found) and "BEGIN" not in repr(found)


def test_an_expired_certificate_is_expired_with_negative_days_left_and_the_date():
    found = assess(secret({"certificate": leaf(not_after=NOW - timedelta(days=3, hours=2)).cert_pem}))
    assert found["status"] == "expired"
    assert found["days_left"] == -4
    assert found["reason"].startswith("expired on 2030-05-29")


def test_an_expiring_certificate_names_its_date_and_days():
    found = assess(secret({"certificate": leaf(not_after=NOW + timedelta(days=12, hours=3)).cert_pem}))
    assert found["status"] == "expiring"
    assert found["days_left"] == 12
    assert "in 12 day(s)" in found["reason"]


def test_a_certificate_not_yet_valid():
    found = assess(secret({"certificate": leaf(not_before=NOW + timedelta(days=2)).cert_pem}))
    assert found["status"] == "not_yet_valid"
    assert "not yet valid" in found["reason"]


def test_the_first_of_several_fields_the_secret_holds_is_used():
    issued = leaf()
    found = assess(secret({"tls.crt": issued.cert_pem}), fields=("certificate", "tls.crt"))
    assert (found["status"], found["field"]) == ("ok", "tls.crt")


def test_a_later_field_is_not_tried_when_the_first_present_is_not_a_certificate():
    found = assess(secret({"certificate": "garbage", "tls.crt": leaf().cert_pem}), fields=("certificate", "tls.crt"))
    assert (found["status"], found["field"]) == ("invalid", "certificate")


def test_a_fullchain_or_combined_pem_reports_its_first_certificate():
    chain = pki.make_chain("combined.example.com")
    combined = chain.leaf.key_pem + chain.leaf.cert_pem + chain.intermediate.cert_pem
    found = assess(secret({"certificate": combined}))
    # The chain is made for today, not for NOW: its summary is what counts here.
    assert found["status"] not in ("invalid", "no_certificate")
    assert found["cn"] == "combined.example.com"
    assert found["fingerprint_sha256"] == _certs.summarise_certificate(chain.leaf.cert)["fingerprint_sha256"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not a pem at all", "field 'certificate' holds no PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "is not a valid PEM certificate"),
        ({"nested": "json"}, "expected text, got dict"),
        (42, "expected text, got int"),
    ],
)
def test_a_field_without_a_parseable_certificate_is_invalid_and_the_reason_does_not_echo_it(value, reason):
    found = assess(secret({"certificate": value}))
    assert found["status"] == "invalid"
    assert reason in found["reason"]
    assert "nested" not in found["reason"] and "AAAA" not in found["reason"]
    assert found["days_left"] is None and found["cn"] is None


def test_a_private_key_in_the_certificate_field_is_invalid_without_showing_it():
    issued = leaf()
    found = assess(secret({"certificate": issued.key_pem}))
    assert found["status"] == "invalid"
    assert found["reason"] == "field 'certificate' holds no PEM certificate (it holds PEM PRIVATE KEY)"


@pytest.mark.parametrize(
    ("found", "reason"),
    [
        (None, "the secret has no version"),
        (secret({"other": "x"}), "the secret has no field 'certificate'"),
        (secret({"certificate": "  \n"}), "field 'certificate' is empty"),
        (secret(None, version=4, deleted=True), "current version 4 is deleted"),
        (secret(None, version=2, deleted=True, destroyed=True), "current version 2 is destroyed"),
    ],
)
def test_no_certificate_says_why(found, reason):
    entry = assess(found)
    assert entry["status"] == "no_certificate"
    assert entry["reason"] == reason
    assert set(entry) == ALL_KEYS


def test_a_deleted_current_version_keeps_its_version_and_managed_tag():
    entry = assess(secret(None, version=4, deleted=True, managed=True))
    assert (entry["version"], entry["managed"]) == (4, True)


def test_a_field_name_the_user_gave_is_named_by_its_place_never_quoted():
    token = "hvs.CAESIJ1bMzVnT2xrQ2dJd0hRb0FvRmFnbw"
    found = assess(secret({"other": "x"}), fields=("certificate", token))
    assert found["reason"] == "the secret has no field 'certificate' or fields[1]"


# -- the report and fail_on ----------------------------------------------------------------------


def report_of(*statuses_by_path):
    return _info.build_report(_info.entry(path, status) for path, status in statuses_by_path)


def test_the_report_is_sorted_by_path_and_counts_every_status():
    report = report_of(("b", "expired"), ("a", "ok"), ("c/", "unreadable"), ("aa", "expiring"), ("ab", "expired"))

    assert [item["path"] for item in report["certificates"]] == ["a", "aa", "ab", "b", "c/"]
    assert report["counts"] == {
        "ok": 1,
        "expiring": 1,
        "expired": 2,
        "not_yet_valid": 0,
        "invalid": 0,
        "no_certificate": 0,
        "unreadable": 1,
    }
    assert report["expired"] == ["ab", "b"]
    assert report["expiring"] == ["aa"]
    assert report["total"] == 5
    assert report["changed"] is False


def test_an_empty_report_has_every_count_at_zero():
    report = _info.build_report([])
    assert report["counts"] == dict.fromkeys(_info.STATUSES, 0)
    assert report["certificates"] == report["expired"] == report["expiring"] == []


def test_fail_on_never_passes_anything():
    assert _info.fail_on_error(report_of(("a", "expired")), "never") is None


def test_fail_on_expired_ignores_expiring():
    assert _info.fail_on_error(report_of(("a", "expiring"), ("b", "ok")), "expired") is None


def test_fail_on_expired_names_the_count_and_paths_and_carries_the_report():
    report = report_of(("a", "expired"), ("b", "expiring"))
    error = _info.fail_on_error(report, "expired")
    assert str(error).startswith("fail_on expired: 1 certificate(s) expired: a ")
    assert error.result["certificates"] == report["certificates"]
    assert error.result["counts"]["expiring"] == 1


def test_fail_on_expiring_counts_expired_too_and_names_only_the_first_paths():
    report = report_of(*[(f"p{index:02d}", "expired" if index % 2 else "expiring") for index in range(8)])
    error = _info.fail_on_error(report, "expiring")
    assert "8 certificate(s) expired or expiring: p00, p01, p02, p03, p04 and 3 more" in str(error)


# -- checking the request before any request ------------------------------------------------------


def prepare(**options):
    defaults = {
        "mount": "secret",
        "prefix": None,
        "paths": None,
        "fields": ["certificate"],
        "expiring_within": 30,
        "fail_on": "never",
        "concurrency": 8,
    }
    return _info.prepare_request(**{**defaults, **options})


def test_a_prefix_with_a_trailing_slash_is_the_same_folder_and_empty_is_the_whole_mount():
    assert prepare(prefix="certs/").prefix == "certs"
    assert prepare(prefix="").prefix == ""
    assert prepare(prefix="/").prefix == ""


def test_paths_given_twice_are_reported_once_in_input_order():
    assert prepare(paths=["certs/b", "certs/a", "certs/b"]).paths == ("certs/b", "certs/a")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix": "/certs"}, "invalid prefix"),
        ({"prefix": "certs/../x"}, "invalid prefix"),
        ({"paths": ["certs/ok", "certs//x"]}, "invalid paths\\[1\\]: it holds an empty"),
        ({"prefix": "certs", "paths": ["certs/a"]}, "not both"),
        ({}, "give either prefix"),
        ({"prefix": "certs", "fields": []}, "fields must name"),
        ({"prefix": "certs", "fields": [""]}, "fields must name"),
        ({"prefix": "certs", "expiring_within": -1}, "expiring_within must be 0 or more"),
        ({"prefix": "certs", "fail_on": "sometimes"}, "fail_on must be one of"),
        ({"prefix": "certs", "concurrency": 0}, "concurrency must be at least 1"),
        ({"prefix": "certs", "mount": "a/../b"}, "invalid mount"),
    ],
)
def test_a_bad_option_is_refused_before_any_request(options, message):
    with pytest.raises(VaultCertError, match=message.replace("(", r"\(")):
        prepare(**options)


def test_with_an_owner_managed_means_the_mark_names_it_and_every_entry_names_its_owner():
    issued = leaf()
    data = {"certificate": issued.cert_pem}
    theirs = SecretVersion(
        version=1, data=data, custom_metadata={"managed_by": "certautopilot.vault", "certautopilot_owner": "b"}
    )
    unnamed = SecretVersion(version=1, data=data, custom_metadata={"managed_by": "certautopilot.vault"})

    def managed(found, owner):
        return _info.assess_secret("certs/x", found, fields=["certificate"], expiring_within=30, now=NOW, owner=owner)

    assert (managed(theirs, "a")["managed"], managed(theirs, "a")["owner"]) == (False, "b")
    assert (managed(theirs, "b")["managed"], managed(theirs, None)["managed"]) == (True, True)
    assert (managed(unnamed, "a")["managed"], managed(unnamed, None)["managed"], managed(unnamed, None)["owner"]) == (
        False,
        True,
        None,
    )


@pytest.mark.parametrize("owner", ["", "a b", "x" * 65, "team/web", "{{ x }}"])
def test_a_bad_owner_is_refused_by_name_without_its_value(owner):
    with pytest.raises(VaultCertError) as refused:
        _info.prepare_request(
            mount="secret",
            prefix="certs",
            paths=None,
            fields=None,
            expiring_within=30,
            fail_on="never",
            concurrency=1,
            owner=owner,
        )
    assert str(refused.value).startswith("owner must be 1 to 64 characters")
    assert owner not in str(refused.value) or not owner
