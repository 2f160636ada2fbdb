# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate delivery: decide against the current version, write with check-and-set.

Private to the collection.
"""

from __future__ import annotations

import random
import typing as t
from dataclasses import dataclass, field
from functools import cached_property

from ansible_collections.certautopilot.vault.plugins.module_utils import _batch, _certs, _health, _kv2, _layouts
from ansible_collections.certautopilot.vault.plugins.module_utils._client import (
    VaultClient,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import (
    CasConflict,
    VaultCertError,
)

ITEM_OPTIONS = ("path", "certificate", "private_key", "private_key_file", "chain")
OTHER_FIELDS = "other_fields"
CUSTOM_METADATA = "custom_metadata"
# Spread racing writers apart a little before they re-read after a cas conflict.
CONFLICT_JITTER = 0.05


@dataclass(frozen=True)
class PushOptions:
    mount: str
    fields: dict[str, str | None]
    # Which secret(s) a certificate becomes, under which keys (_layouts.py); pkcs12 encrypts with the password.
    layout: str = _layouts.DEFAULT
    pkcs12_password: str | None = field(default=None, repr=False)
    include_private_key: bool = True
    keep_other_fields: bool = True
    validate: bool = True
    custom_metadata: bool = False
    # Ask the server, before any write, whether the token may write every path of the run.
    check_capabilities: bool = False
    check_mode: bool = False
    # Summaries for the diff cost a PEM parse per field: made only in diff mode.
    diff: bool = False
    # Certificates in flight at once, over the client's pool of connections.
    concurrency: int = 1

    @cached_property
    def managed_keys(self) -> frozenset[str]:
        """The JSON keys a push owns, worked out once per run, not per certificate."""
        return _layouts.managed_keys(self.layout, self.fields)


@dataclass(frozen=True)
class PushItem:
    """One certificate to deliver, parsed (and validated) before any request."""

    path: str
    # The parsed certificate and key are not kept: a batch of thousands holds only what it sends.
    payload: dict[str, str]
    summary: dict


@dataclass(frozen=True)
class Decision:
    current: _kv2.SecretVersion | None
    desired: dict
    desired_custom_metadata: dict | None
    changed_fields: list[str]
    # The custom metadata before this run, set back if the data write after it is refused.
    previous_custom_metadata: dict | None = None

    @property
    def base_version(self) -> int:
        return self.current.version if self.current else 0

    @property
    def data_changed(self) -> bool:
        return self.current is None or self.current.data != self.desired


def prepare_items(raw_items: t.Sequence[t.Mapping[str, t.Any]], options: PushOptions) -> list[PushItem]:
    """Check every path and certificate of the run; nothing is sent before all pass."""
    _kv2.validate_path(options.mount, what="mount")
    for raw in raw_items:
        _kv2.validate_path(raw.get("path"))
    _batch.refuse_repeated_paths((raw["path"] for raw in raw_items), option="certificates")
    items = [item for raw in raw_items for item in _prepare_item(raw, raw["path"], options)]
    if _layouts.several_secrets(options.layout):
        # Each certificate is several secrets below its path: every one of them must be a path of its own.
        for item in items:
            _kv2.validate_path(item.path)
        _batch.refuse_repeated_paths((item.path for item in items), option="certificates")
    return items


def _prepare_item(raw: t.Mapping[str, t.Any], path: str, options: PushOptions) -> list[PushItem]:
    if not raw.get("certificate"):
        raise VaultCertError(f"{path}: certificate is required")
    if options.include_private_key and not raw.get("private_key"):
        raise VaultCertError(f"{path}: private_key is required unless include_private_key is false")
    try:
        bundle = _certs.load_bundle(
            certificate=raw["certificate"],
            private_key=raw.get("private_key") if options.include_private_key else None,
            chain=raw.get("chain"),
        )
        if options.validate:
            _certs.validate_bundle(bundle)
    except VaultCertError as exc:
        raise VaultCertError(f"{path}: {exc}") from None
    try:
        secrets = _layouts.build_secrets(
            bundle,
            path=path,
            layout=options.layout,
            fields=options.fields,
            include_private_key=options.include_private_key,
            pkcs12_password=options.pkcs12_password,
        )
    except VaultCertError as exc:
        raise VaultCertError(f"{path}: {exc}") from None
    summary = _certs.summarise_certificate(bundle.certificate)
    return [PushItem(path=secret, payload=payload, summary=summary) for secret, payload in secrets]


def decide(
    item: PushItem,
    current: _kv2.SecretVersion | None,
    options: PushOptions,
    *,
    metadata_without_version: dict | None = None,
) -> Decision:
    """What the new version's data should be, and which fields that changes.

    ``metadata_without_version`` is the custom metadata of a secret that has no version
    yet, which the data read (``current`` None) cannot show.
    """
    item, options = _layouts.for_decision(item, current.data if current else None, options)
    current_data = (current.data if current else None) or {}
    managed = options.managed_keys
    desired = dict(item.payload)
    if options.keep_other_fields:
        desired.update({key: value for key, value in current_data.items() if key not in managed})
    changed = [name for name, key in options.fields.items() if key and current_data.get(key) != desired.get(key)]
    unmanaged_before = {k: v for k, v in current_data.items() if k not in managed}
    unmanaged_after = {k: v for k, v in desired.items() if k not in managed}
    if unmanaged_before != unmanaged_after:
        changed.append(OTHER_FIELDS)
    desired_metadata = existing = None
    if options.custom_metadata:
        existing = dict((current.custom_metadata if current else metadata_without_version) or {})
        desired_metadata = {**existing, **_certs.certificate_custom_metadata(item.summary)}
        if desired_metadata == existing and current is not None:
            desired_metadata = None
        else:
            changed.append(CUSTOM_METADATA)
    if current is not None and current.data is None and not changed:
        # The current version is deleted or destroyed: writing restores a readable version.
        changed = [name for name, key in options.fields.items() if key and key in desired]
    return Decision(
        current=current,
        desired=desired,
        desired_custom_metadata=desired_metadata,
        changed_fields=changed,
        previous_custom_metadata=existing,
    )


def push_one(client: VaultClient, item: PushItem, options: PushOptions) -> dict:
    """Deliver one certificate: read, decide, write with cas; re-read and re-decide after a conflict.

    A write whose answer was lost is resolved by ``_kv2.write`` (it reads the
    secret back); what reaches here is a write that landed, a conflict with
    another writer, or an outcome nobody can know yet (OutcomeUnknown).
    """
    waits = client.retry_waits()
    for attempt in range(len(waits) + 1):
        current = _kv2.read_version(client, options.mount, item.path)
        decision = decide(
            item, current, options, metadata_without_version=_metadata_without_version(client, item, current, options)
        )
        if not (decision.data_changed or decision.desired_custom_metadata is not None):
            return _result(item, options, decision, version=decision.base_version, changed=False)
        if options.check_mode:
            return _result(item, options, decision, version=decision.base_version, changed=True)
        try:
            return _apply(client, item, options, decision)
        except CasConflict:
            if attempt == len(waits):
                break
            client.pause(random.uniform(0, CONFLICT_JITTER))
    raise VaultCertError(
        f"check-and-set conflict on {_kv2.data_path(options.mount, item.path)}: other writers kept changing it; "
        f"gave up after {len(waits) + 1} attempts"
    )


def _metadata_without_version(
    client: VaultClient, item: PushItem, current: _kv2.SecretVersion | None, options: PushOptions
) -> dict | None:
    """The custom metadata to keep when the data read could not show it.

    A secret can have metadata and no version yet (someone wrote its metadata
    first); a data read then answers 404 without it, and writing ours alone
    would wipe theirs.
    """
    if not options.custom_metadata or current is not None:
        return None
    metadata = _kv2.read_metadata(client, options.mount, item.path)
    return metadata.custom_metadata if metadata else None


def _apply(client: VaultClient, item: PushItem, options: PushOptions, decision: Decision) -> dict:
    version = decision.base_version
    if decision.data_changed:
        version = _kv2.write_with_custom_metadata(
            client,
            options.mount,
            item.path,
            decision.desired,
            cas=decision.base_version,
            custom_metadata=decision.desired_custom_metadata,
            previous_custom_metadata=decision.previous_custom_metadata,
        )
    elif decision.desired_custom_metadata is not None:
        _kv2.write_custom_metadata(client, options.mount, item.path, decision.desired_custom_metadata)
    return _result(item, options, decision, version=version, changed=True)


def _result(item: PushItem, options: PushOptions, decision: Decision, *, version: int, changed: bool) -> dict:
    current = decision.current
    result = {
        "changed": changed,
        "mount": options.mount,
        "path": item.path,
        "version": version or None,
        "previous_version": current.version if current else None,
        "created": current is None,
        "changed_fields": decision.changed_fields if changed else [],
        "certificate": item.summary,
    }
    if options.diff:
        before = current.data if current and current.data is not None else {}
        result["diff"] = {
            "before_header": _kv2.data_path(options.mount, item.path),
            "after_header": _kv2.data_path(options.mount, item.path),
            "before": _certs.summarise_secret(before, fields=options.fields),
            "after": _certs.summarise_secret(decision.desired, fields=options.fields),
        }
    return result


def push_all(client: VaultClient, items: t.Sequence[PushItem], options: PushOptions, *, batch: bool) -> list[dict]:
    """Deliver the items over the client's one login, results in input order (see _batch.run_each)."""
    _kv2.check_mount(client, options.mount)
    if options.check_capabilities:
        _health.require_capabilities(
            client, {_kv2.data_path(options.mount, item.path): _health.PUSH_CAPABILITIES for item in items}
        )
    return _batch.run_each(
        items,
        lambda item: push_one(client, item, options),
        paths=[item.path for item in items],
        batch=batch,
        noun="certificate",
        concurrency=options.concurrency,
    )
