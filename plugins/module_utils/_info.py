# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The read-only inventory of certificate secrets: list, read, classify, report. Private to the collection.

Nothing here writes. A path the token may not read (or a folder it may not list) is an entry of
the report, not a failure; anything else that goes wrong (the server unreachable, a login refused)
fails the run, since a report with holes the reader cannot see would pass a pipeline it should stop.
"""

from __future__ import annotations

import math
import typing as t
from dataclasses import dataclass
from datetime import datetime, timezone

from ansible_collections.certautopilot.vault.plugins.module_utils import _batch, _certs, _kv2
from ansible_collections.certautopilot.vault.plugins.module_utils._client import VaultClient
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import PermissionDenied, VaultCertError

OK = "ok"
EXPIRING = "expiring"
EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
INVALID = "invalid"
NO_CERTIFICATE = "no_certificate"
UNREADABLE = "unreadable"
STATUSES = (OK, EXPIRING, EXPIRED, NOT_YET_VALID, INVALID, NO_CERTIFICATE, UNREADABLE)

FAIL_ON_CHOICES = ("never", EXPIRED, EXPIRING)
DEFAULT_EXPIRING_WITHIN = 30
DEFAULT_FIELDS = ("certificate",)
# Paths a fail_on message names; the full lists are in the result it carries.
PATHS_IN_MESSAGE = 5
SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class InfoRequest:
    mount: str
    # The folder to list recursively ("" is the whole mount); None when ``paths`` is given.
    prefix: str | None = None
    paths: tuple[str, ...] = ()
    fields: tuple[str, ...] = DEFAULT_FIELDS
    expiring_within: int = DEFAULT_EXPIRING_WITHIN
    fail_on: str = "never"
    concurrency: int = 1
    # With an owner, an entry's managed means "marked with this owner"; without, "carries managed_by".
    owner: str | None = None


def prepare_request(
    *,
    mount: str,
    prefix: str | None,
    paths: t.Sequence[str] | None,
    fields: t.Sequence[str] | None,
    expiring_within: int,
    fail_on: str,
    concurrency: int,
    owner: str | None = None,
) -> InfoRequest:
    """Check every option of the run; nothing is sent before all pass."""
    _kv2.validate_path(mount, what="mount")
    _kv2.validate_owner(owner)
    if (prefix is None) == (paths is None):
        raise VaultCertError("give either prefix (a folder to list) or paths (the secrets to read), not both")
    if prefix is not None:
        # "certs/" and "certs" name the same folder; "" and "/" the whole mount.
        prefix = prefix.rstrip("/")
        if prefix:
            _kv2.validate_secret_path(mount, prefix, what="prefix")
    for index, path in enumerate(paths or ()):
        _kv2.validate_secret_path(mount, path, what=f"paths[{index}]")
    fields = tuple(fields) if fields else ()
    if not fields or not all(isinstance(name, str) and name for name in fields):
        raise VaultCertError("fields must name at least one JSON key of the secret, each a non-empty string")
    if expiring_within < 0:
        raise VaultCertError(f"expiring_within must be 0 or more days, got {expiring_within}")
    if fail_on not in FAIL_ON_CHOICES:
        raise VaultCertError(f"fail_on must be one of {', '.join(FAIL_ON_CHOICES)}")
    return InfoRequest(
        mount=mount,
        prefix=prefix,
        # A path given twice is one secret: reported once (reading it twice would race nothing).
        paths=tuple(dict.fromkeys(paths or ())),
        fields=fields,
        expiring_within=expiring_within,
        fail_on=fail_on,
        concurrency=_batch.check_concurrency(concurrency),
        owner=owner,
    )


def argument_spec() -> dict:
    """The options of an inventory besides connection and auth: vault_cert_info's, and the cert_expiry source's."""
    return {
        "mount": {"type": "str", "default": "secret", "aliases": ["engine_mount_point"]},
        "prefix": {"type": "str"},
        "paths": {"type": "list", "elements": "str"},
        "fields": {"type": "list", "elements": "str", "default": list(DEFAULT_FIELDS)},
        "expiring_within": {"type": "int", "default": DEFAULT_EXPIRING_WITHIN},
        "fail_on": {"type": "str", "default": "never", "choices": list(FAIL_ON_CHOICES)},
        "concurrency": {"type": "int", "default": _batch.DEFAULT_CONCURRENCY},
        "owner": {"type": "str"},
    }


def request_from(params: t.Mapping[str, t.Any]) -> InfoRequest:
    """The checked request for options of argument_spec() (without fail_on: never)."""
    return prepare_request(
        mount=params["mount"],
        prefix=params["prefix"],
        paths=params["paths"],
        fields=params["fields"],
        expiring_within=params["expiring_within"],
        fail_on=params.get("fail_on") or "never",
        concurrency=params["concurrency"],
        owner=params["owner"],
    )


# -- classification (pure) -----------------------------------------------------


def days_left(not_after: datetime, now: datetime) -> int:
    """Whole days until ``not_after``, rounded down: 0 on its last day, negative once it has passed."""
    return math.floor((not_after - now).total_seconds() / SECONDS_PER_DAY)


def validity_status(not_before: datetime, not_after: datetime, *, now: datetime, expiring_within: int) -> str:
    """ok, expiring, expired or not_yet_valid for a certificate valid from ``not_before`` to ``not_after``."""
    if not_after < now:
        return EXPIRED
    if now < not_before:
        return NOT_YET_VALID
    if days_left(not_after, now) <= expiring_within:
        return EXPIRING
    return OK


def entry(path: str, status: str, reason: str | None = None, **found: t.Any) -> dict[str, t.Any]:
    """One secret's line of the report; every key is there, null when unknown."""
    return {
        "path": path,
        "version": None,
        "updated_time": None,
        "managed": False,
        "owner": None,
        "field": None,
        "status": status,
        "reason": reason,
        "days_left": None,
        **dict.fromkeys(_certs.SUMMARY_KEYS),
        **found,
    }


def assess_secret(
    path: str,
    secret: _kv2.SecretVersion | None,
    *,
    fields: t.Sequence[str],
    expiring_within: int,
    now: datetime,
    owner: str | None = None,
) -> dict[str, t.Any]:
    """The report entry of a secret as its current-version read returned it (None: no version at all).

    The certificate is the first of ``fields`` the data holds; a later field is not tried when that
    one is not a certificate. No value of the secret is returned or quoted, only the summary.
    """
    if secret is None:
        return entry(path, NO_CERTIFICATE, "the secret has no version")
    known = {
        "version": secret.version,
        "updated_time": secret.created_time or None,
        "managed": is_managed(secret.custom_metadata, owner),
        "owner": _kv2.owner_of(secret.custom_metadata),
    }
    if secret.data is None:
        # Vault answers a deleted or destroyed current version with its metadata and no data.
        state = "destroyed" if secret.destroyed else "deleted"
        return entry(path, NO_CERTIFICATE, f"current version {secret.version} is {state}", **known)
    field = next((name for name in fields if name in secret.data), None)
    if field is None:
        return entry(path, NO_CERTIFICATE, f"the secret has no field {_field_names(fields)}", **known)
    known["field"] = field
    what = f"field {_field_name(fields, fields.index(field))}"
    value = secret.data[field]
    if isinstance(value, str) and not value.strip():
        return entry(path, NO_CERTIFICATE, f"{what} is empty", **known)
    try:
        certificate = _certs.parse_leaf_certificate(value, what=what)
        summary = _certs.summarise_certificate(certificate)
    except VaultCertError as exc:
        # The parser's messages name the field and PEM labels, never the value.
        return entry(path, INVALID, str(exc), **known)
    not_before, not_after = _certs.validity_period(certificate)
    status = validity_status(not_before, not_after, now=now, expiring_within=expiring_within)
    remaining = days_left(not_after, now)
    return entry(
        path,
        status,
        _validity_reason(status, summary, remaining, expiring_within),
        days_left=remaining,
        **known,
        **{key: summary[key] for key in _certs.SUMMARY_KEYS},
    )


def is_managed(custom_metadata: t.Mapping[str, t.Any] | None, owner: str | None) -> bool:
    """With an owner, whether the mark names it; without, whether the secret carries managed_by at all."""
    if owner is not None:
        return _kv2.is_owned_by(custom_metadata, owner)
    return _kv2.is_managed(custom_metadata)


def _field_name(fields: t.Sequence[str], index: int) -> str:
    """How a reason names a field: the default by its name, one the user gave by its place in ``fields``."""
    name = fields[index]
    return repr(name) if name in DEFAULT_FIELDS else f"fields[{index}]"


def _field_names(fields: t.Sequence[str]) -> str:
    return " or ".join(_field_name(fields, index) for index in range(len(fields)))


def _validity_reason(status: str, summary: t.Mapping[str, t.Any], remaining: int, expiring_within: int) -> str | None:
    if status == EXPIRED:
        return f"expired on {summary['not_after']}"
    if status == NOT_YET_VALID:
        return f"not yet valid (not before {summary['not_before']})"
    if status == EXPIRING:
        return f"expires on {summary['not_after']}, in {remaining} day(s) (expiring_within {expiring_within})"
    return None


def build_report(entries: t.Iterable[dict[str, t.Any]]) -> dict[str, t.Any]:
    """What the module returns for its entries: sorted by path, the lists and counts a pipeline acts on."""
    certificates = sorted(entries, key=lambda item: item["path"])
    counts = dict.fromkeys(STATUSES, 0)
    for item in certificates:
        counts[item["status"]] += 1
    return {
        "changed": False,
        "certificates": certificates,
        "expiring": [item["path"] for item in certificates if item["status"] == EXPIRING],
        "expired": [item["path"] for item in certificates if item["status"] == EXPIRED],
        "counts": counts,
        "total": len(certificates),
    }


def fail_on_error(report: t.Mapping[str, t.Any], fail_on: str) -> VaultCertError | None:
    """The failure ``fail_on`` asks for, carrying the whole report; None when the report passes.

    ``expiring`` fails on expired certificates too: a pipeline that stops for one about to expire
    must stop for one that has.
    """
    if fail_on == EXPIRED:
        failing, words = report["expired"], "expired"
    elif fail_on == EXPIRING:
        failing, words = sorted(report["expired"] + report["expiring"]), "expired or expiring"
    else:
        return None
    if not failing:
        return None
    named = ", ".join(failing[:PATHS_IN_MESSAGE])
    if len(failing) > PATHS_IN_MESSAGE:
        named += f" and {len(failing) - PATHS_IN_MESSAGE} more"
    return VaultCertError(
        f"fail_on {fail_on}: {len(failing)} certificate(s) {words}: {named} (see certificates for the report)",
        result=dict(report),
    )


# -- the inventory (network) ---------------------------------------------------


def inventory(client: VaultClient, request: InfoRequest, *, now: datetime | None = None) -> dict[str, t.Any]:
    """Report on every secret of the request over the client's one login, at most ``concurrency`` requests at once.

    Requests - one mount check, one LIST per folder (with ``prefix``), one read per secret.
    Fails as fail_on asks, with the whole report in the failure.
    """
    now = now or datetime.now(timezone.utc)
    _kv2.check_mount(client, request.mount)
    entries: list[dict[str, t.Any]] = []
    if request.prefix is None:
        paths = list(request.paths)
    else:
        paths, denied = list_secrets(client, request.mount, request.prefix, concurrency=request.concurrency)
        entries += denied
    entries += _batch.run_each(
        paths,
        lambda path: read_entry(client, request, path, now=now),
        paths=paths,
        batch=False,
        noun="secret",
        concurrency=request.concurrency,
    )
    report = build_report(entries)
    failure = fail_on_error(report, request.fail_on)
    if failure is not None:
        raise failure
    return report


def read_entry(client: VaultClient, request: InfoRequest, path: str, *, now: datetime) -> dict[str, t.Any]:
    try:
        secret = _kv2.read_version(client, request.mount, path)
    except PermissionDenied as exc:
        return entry(path, UNREADABLE, str(exc))
    return assess_secret(
        path, secret, fields=request.fields, expiring_within=request.expiring_within, now=now, owner=request.owner
    )


def list_secrets(client: VaultClient, mount: str, prefix: str, *, concurrency: int) -> tuple[list[str], list[dict]]:
    """Every secret path under ``prefix``, recursively, and an unreadable entry per folder the token may not list.

    One LIST per folder; the folders of one depth are listed together, ``concurrency`` at a time.
    A folder's entry is its path with a trailing "/".
    """
    secrets: list[str] = []
    denied: list[dict] = []
    folders = [prefix]
    while folders:
        listings = _batch.run_each(
            folders,
            lambda folder: _list_folder(client, mount, folder),
            paths=folders,
            batch=False,
            noun="folder",
            concurrency=concurrency,
        )
        next_folders: list[str] = []
        for folder, listing in zip(folders, listings):
            if "denied" in listing:
                denied.append(entry(f"{folder}/", UNREADABLE, listing["denied"]))
                continue
            for key in listing["keys"]:
                child = f"{folder}/{key}" if folder else key
                if key.endswith("/"):
                    next_folders.append(child.rstrip("/"))
                else:
                    secrets.append(child)
        folders = next_folders
    return secrets, denied


def _list_folder(client: VaultClient, mount: str, folder: str) -> dict[str, t.Any]:
    try:
        return {"keys": _kv2.list_keys(client, mount, folder)}
    except PermissionDenied as exc:
        return {"denied": str(exc)}
