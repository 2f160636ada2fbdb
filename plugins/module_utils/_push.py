# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate delivery: decide against the current version, write with check-and-set.

Private to the collection.
"""

from __future__ import annotations

import random
import threading
import typing as t
from dataclasses import dataclass, field
from functools import cached_property

from ansible_collections.certautopilot.vault.plugins.module_utils import _batch, _certs, _health, _kv2, _layouts
from ansible_collections.certautopilot.vault.plugins.module_utils._client import (
    VaultClient,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import (
    CasConflict,
    PermissionDenied,
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
    version_policy: _kv2.VersionPolicy = _kv2.VersionPolicy()
    # Set once the server refused to record the ownership tag: the run stops asking (a policy refuses them all).
    tag_refused: threading.Event = field(default_factory=threading.Event, compare=False)
    # Why a tag was not recorded, per secret ("<path>: <error>"), for the module's warning.
    tag_failures: list = field(default_factory=list, compare=False)

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
    changed_fields: list[str]
    # Metadata to write before the data (settings, custom_metadata), as the metadata API takes it; None for none.
    metadata: dict | None = None
    # What ``metadata`` replaces, set back when the data write after it is refused.
    previous_metadata: dict | None = None
    # The ownership tag is missing and goes on its own, after any data write (see _record_ownership).
    tag_separately: bool = False
    # The secret's custom_metadata before this run; None when no read showed it (a new secret).
    custom_metadata: dict | None = None

    @property
    def base_version(self) -> int:
        return self.current.version if self.current else 0

    @property
    def data_changed(self) -> bool:
        return self.current is None or self.current.data != self.desired

    @property
    def anything_to_write(self) -> bool:
        return self.data_changed or self.metadata is not None or self.tag_separately


@dataclass(frozen=True)
class SecretState:
    """What the reads before a decision showed of a secret."""

    current: _kv2.SecretVersion | None
    # The metadata read, when one was made (version policy, or custom metadata of a secret without a version).
    metadata: _kv2.SecretMetadata | None = None
    metadata_read: bool = False

    @property
    def custom_metadata(self) -> dict | None:
        """The secret's custom_metadata; None when neither read could show it."""
        if self.current is not None:
            return dict(self.current.custom_metadata or {})
        if self.metadata_read:
            return dict((self.metadata.custom_metadata if self.metadata else None) or {})
        return None


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


def decide(item: PushItem, state: SecretState, options: PushOptions) -> Decision:
    """What the new version's data and the secret's metadata should be, and which fields that changes."""
    current = state.current
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
    if current is not None and current.data is None and not changed:
        # The current version is deleted or destroyed: writing restores a readable version.
        changed = [name for name, key in options.fields.items() if key and key in desired]
    metadata, previous, tag_separately = _metadata_changes(item, state, options, changed)
    return Decision(
        current=current,
        desired=desired,
        changed_fields=changed,
        metadata=metadata,
        previous_metadata=previous,
        tag_separately=tag_separately,
        custom_metadata=state.custom_metadata,
    )


def _metadata_changes(
    item: PushItem, state: SecretState, options: PushOptions, changed: list[str]
) -> tuple[dict | None, dict | None, bool]:
    """The metadata written before the data and what it replaces, and whether the tag goes on its own.

    Settings and the opt-in certificate summary are asked for: a refusal fails the push before any
    data is written. The ownership tag alone is not: it rides along with them when they are written,
    and otherwise goes on its own so that a token that may not write metadata still delivers.
    """
    settings = options.version_policy.differences(state.metadata) if options.version_policy.given else {}
    changed.extend(settings)
    existing = state.custom_metadata
    tag_missing = not _kv2.is_managed(existing) and not options.tag_refused.is_set()
    if tag_missing:
        changed.append(_kv2.MANAGED_BY_KEY)
    wanted = dict(existing or {})
    if options.custom_metadata:
        wanted.update(_certs.certificate_custom_metadata(item.summary))
        if wanted != (existing or {}) or state.current is None:
            changed.append(CUSTOM_METADATA)
    metadata = dict(settings)
    if existing is not None and (metadata or CUSTOM_METADATA in changed):
        metadata["custom_metadata"] = _kv2.with_managed_by(wanted) if tag_missing else wanted
        tag_missing = False
    if not metadata:
        return None, None, tag_missing
    previous = _kv2.VersionPolicy.current_values(state.metadata) if state.metadata else {}
    previous = {name: previous[name] for name in metadata if name in previous}
    previous["custom_metadata"] = existing or {}
    return metadata, previous, tag_missing


def push_one(client: VaultClient, item: PushItem, options: PushOptions) -> dict:
    """Deliver one certificate: read, decide, write with cas; re-read and re-decide after a conflict.

    A write whose answer was lost is resolved by ``_kv2.write`` (it reads the
    secret back); what reaches here is a write that landed, a conflict with
    another writer, or an outcome nobody can know yet (OutcomeUnknown).
    """
    waits = client.retry_waits()
    for attempt in range(len(waits) + 1):
        decision = decide(item, _read_state(client, item, options), options)
        if not decision.anything_to_write:
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


def _read_state(client: VaultClient, item: PushItem, options: PushOptions) -> SecretState:
    """The current version, and the metadata when the decision needs what the data read does not show.

    The version policy is compared with the metadata's settings. A secret can have metadata and
    no version yet (someone wrote its metadata first); a data read then answers 404 without its
    custom metadata, and writing the certificate summary alone would wipe theirs.
    """
    current = _kv2.read_version(client, options.mount, item.path)
    if options.version_policy.given or (options.custom_metadata and current is None):
        return SecretState(current, _kv2.read_metadata(client, options.mount, item.path), metadata_read=True)
    return SecretState(current)


def _apply(client: VaultClient, item: PushItem, options: PushOptions, decision: Decision) -> dict:
    version = decision.base_version
    custom_metadata = decision.custom_metadata
    if decision.data_changed:
        written = _kv2.write_with_metadata(
            client,
            options.mount,
            item.path,
            decision.desired,
            cas=decision.base_version,
            metadata=decision.metadata,
            previous_metadata=decision.previous_metadata,
        )
        version = written.version
        if custom_metadata is None:
            custom_metadata = written.custom_metadata
    elif decision.metadata is not None:
        _kv2.write_metadata(client, options.mount, item.path, decision.metadata)
    managed = _kv2.is_managed((decision.metadata or {}).get("custom_metadata", custom_metadata))
    if decision.tag_separately:
        managed = _record_ownership(client, item, options, custom_metadata)
    return _result(item, options, decision, version=version, changed=True, managed=managed)


def _record_ownership(client: VaultClient, item: PushItem, options: PushOptions, custom_metadata: dict | None) -> bool:
    """Add the managed_by tag to the secret's custom_metadata; False when it could not be written.

    The certificate is delivered either way - its data write, when there was one, has succeeded, so
    no failure here may report it as not written. Without the tag vault_cert_retire and the role's
    prune leave the secret alone, which is the safe side; the module warns. After a refusal (403)
    the run stops asking: one policy usually covers every path.
    """
    try:
        if custom_metadata is None:
            # A read-back settled the write, so its answer's custom metadata is unknown.
            metadata = _kv2.read_metadata(client, options.mount, item.path)
            custom_metadata = (metadata.custom_metadata if metadata else None) or {}
        _kv2.write_metadata(
            client, options.mount, item.path, {"custom_metadata": _kv2.with_managed_by(custom_metadata)}
        )
    except VaultCertError as exc:
        if isinstance(exc, PermissionDenied):
            options.tag_refused.set()
        options.tag_failures.append(f"{item.path}: {exc}")
        return False
    return True


def ownership_warning(results: t.Sequence[t.Mapping[str, t.Any]], options: PushOptions) -> str | None:
    """The warning for secrets delivered without the managed_by tag, None when every one carries it."""
    untagged = [result["path"] for result in results if not result.get("managed", True)]
    if not untagged:
        return None
    reason = options.tag_failures[0] if options.tag_failures else "not asked again after a refusal"
    return (
        f"{len(untagged)} secret(s) were delivered but are not marked {_kv2.MANAGED_BY_KEY}: {_kv2.MANAGED_BY} in "
        f"their custom_metadata ({', '.join(untagged[:5])}{', ...' if len(untagged) > 5 else ''}); vault_cert_retire "
        f"and the role's prune leave such secrets alone. The mark needs create and update on "
        f"{options.mount}/metadata/<path>. First failure - {reason}"
    )


def _result(
    item: PushItem,
    options: PushOptions,
    decision: Decision,
    *,
    version: int,
    changed: bool,
    managed: bool | None = None,
) -> dict:
    current = decision.current
    if managed is None:
        # Not written (unchanged, or check mode): managed once this run would have recorded the tag.
        managed = _kv2.is_managed(decision.custom_metadata) or _kv2.MANAGED_BY_KEY in decision.changed_fields
    result = {
        "changed": changed,
        "mount": options.mount,
        "path": item.path,
        "version": version or None,
        "previous_version": current.version if current else None,
        "created": current is None,
        "changed_fields": decision.changed_fields if changed else [],
        "managed": managed,
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
