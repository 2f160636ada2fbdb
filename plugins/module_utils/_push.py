# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate delivery: decide against the current version, write with check-and-set.

Private to the collection.
"""

from __future__ import annotations

import random
import typing as t
from dataclasses import dataclass, field, replace
from functools import cached_property

from ansible_collections.certautopilot.vault.plugins.module_utils import (
    _batch,
    _certs,
    _health,
    _kv2,
    _layouts,
    _version_policy,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._client import (
    VaultClient,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import (
    CasConflict,
    VaultCertError,
)

ITEM_OPTIONS = ("path", "certificate", "certificate_file", "private_key", "private_key_file", "chain", "chain_file")
OTHER_FIELDS = "other_fields"
CUSTOM_METADATA = "custom_metadata"
# changed_fields that name the secret's metadata rather than its data.
METADATA_FIELDS = frozenset({CUSTOM_METADATA, _kv2.OWNER_KEY, "max_versions", "delete_version_after", "cas_required"})
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
    version_policy: _version_policy.VersionPolicy = _version_policy.VersionPolicy()
    # Whose secrets these are (the mark written before the data); None writes no mark and takes no owned secret.
    owner: str | None = None
    # Whether a push with an owner may mark a secret that carries no owner's mark yet.
    adopt: bool = True

    @cached_property
    def secret_layout(self) -> _layouts.Layout:
        return _layouts.of(self.layout)

    @cached_property
    def managed_keys(self) -> frozenset[str]:
        """The JSON keys a push owns, worked out once per run, not per certificate."""
        return self.secret_layout.managed_keys(self.fields)


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
    # The secret's custom_metadata before this run; None when no read showed it (a new secret).
    custom_metadata: dict | None = None
    # The metadata version ``metadata`` is written against (check-and-set); None when the server offers none.
    metadata_cas: int | None = None

    @property
    def base_version(self) -> int:
        return self.current.version if self.current else 0

    @property
    def data_changed(self) -> bool:
        return self.current is None or self.current.data != self.desired

    @property
    def anything_to_write(self) -> bool:
        return self.data_changed or self.metadata is not None

    @property
    def custom_metadata_after(self) -> dict:
        """The secret's custom_metadata once this decision is carried out."""
        written = (self.metadata or {}).get("custom_metadata")
        return dict(written if written is not None else self.custom_metadata or {})


@dataclass(frozen=True)
class SecretState:
    """What the reads before a decision showed of a secret."""

    current: _kv2.SecretVersion | None
    # The metadata read, when one was made (version policy, or custom metadata of a secret without a version).
    metadata: _kv2.SecretMetadata | None = None
    metadata_read: bool = False

    @property
    def custom_metadata(self) -> dict | None:
        """The secret's custom_metadata; None when neither read could show it.

        The metadata read wins: it is the later read, and the one a metadata write is guarded by.
        """
        if self.metadata_read:
            return dict((self.metadata.custom_metadata if self.metadata else None) or {})
        if self.current is not None:
            return dict(self.current.custom_metadata or {})
        return None

    @property
    def exists(self) -> bool:
        """Whether the secret has a version or metadata (a deleted, destroyed or metadata-only one included)."""
        return self.current is not None or self.metadata is not None

    @property
    def metadata_cas(self) -> int | None:
        """What a metadata write is guarded by: the version read, 0 for none yet; None when unknown."""
        if not self.metadata_read:
            return None
        return 0 if self.metadata is None else self.metadata.current_metadata_version


def prepare_items(raw_items: t.Sequence[t.Mapping[str, t.Any]], options: PushOptions) -> list[PushItem]:
    """Check every path and certificate of the run; nothing is sent before all pass."""
    _kv2.validate_path(options.mount, what="mount")
    _kv2.validate_owner(options.owner)
    for index, raw in enumerate(raw_items):
        _kv2.validate_secret_path(
            options.mount, raw.get("path"), what=_kv2.item_option("certificates", index, len(raw_items))
        )
    _batch.refuse_repeated_paths((raw["path"] for raw in raw_items), option="certificates")
    items = [item for raw in raw_items for item in _prepare_item(raw, raw["path"], options)]
    if options.secret_layout.several_secrets:
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
        secrets = options.secret_layout.build_secrets(bundle, path, options)
    except VaultCertError as exc:
        raise VaultCertError(f"{path}: {exc}") from None
    summary = _certs.summarise_certificate(bundle.certificate)
    return [PushItem(path=secret, payload=payload, summary=summary) for secret, payload in secrets]


def decide(item: PushItem, state: SecretState, options: PushOptions) -> Decision:
    """What the new version's data and the secret's metadata should be, and which fields that changes."""
    current = state.current
    item, options = options.secret_layout.for_decision(item, current.data if current else None, options)
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
    refuse_foreign(state, options, item.path)
    metadata, previous, metadata_changed = _metadata_changes(item, state, options)
    return Decision(
        current=current,
        desired=desired,
        changed_fields=changed + metadata_changed,
        metadata=metadata,
        previous_metadata=previous,
        custom_metadata=state.custom_metadata,
        metadata_cas=state.metadata_cas,
    )


def refuse_foreign(state: SecretState, options: PushOptions, path: str) -> None:
    """Refuse a secret another owner's mark names, or (adopt: false) one no mark of ours names; nothing written.

    Without an owner any owned secret is refused. The owner quoted is one read from the server,
    shown only when it is a valid owner name.
    """
    custom = state.custom_metadata
    location = _kv2.data_path(options.mount, path)
    _kv2.refuse_other_owner(custom, options.owner, location)
    if options.owner is None:
        return
    if not options.adopt and state.exists and not _kv2.is_owned_by(custom, options.owner):
        raise VaultCertError(
            f"{location} exists and is not marked with owner {options.owner} (adopt: false); nothing written"
        )


def _metadata_changes(
    item: PushItem, state: SecretState, options: PushOptions
) -> tuple[dict | None, dict | None, list[str]]:
    """The metadata written before the data, what it replaces, and the changed_fields it adds.

    Settings, the opt-in certificate summary and the ownership mark (with an owner) all go before
    the data: a token that may not write metadata is refused before any data is written.
    """
    settings = options.version_policy.differences(state.metadata) if options.version_policy.given else {}
    changed = list(settings)
    existing = state.custom_metadata
    wanted = dict(existing or {})
    if options.custom_metadata:
        wanted.update(_certs.certificate_custom_metadata(item.summary))
        if wanted != (existing or {}) or state.current is None:
            changed.append(CUSTOM_METADATA)
    if options.owner is not None and not _kv2.is_owned_by(existing, options.owner):
        wanted = _kv2.with_mark(wanted, options.owner)
        changed.append(_kv2.OWNER_KEY)
    metadata = dict(settings)
    if CUSTOM_METADATA in changed or _kv2.OWNER_KEY in changed:
        metadata["custom_metadata"] = wanted
    if not metadata:
        return None, None, changed
    previous = _version_policy.VersionPolicy.current_values(state.metadata) if state.metadata else {}
    previous = {name: previous[name] for name in metadata if name in previous}
    previous["custom_metadata"] = existing or {}
    return metadata, previous, changed


def push_one(client: VaultClient, item: PushItem, options: PushOptions) -> dict:
    """Deliver one certificate: read, decide, write with cas; re-read and re-decide after a conflict.

    A write whose answer was lost is resolved by ``_kv2.write`` (it reads the
    secret back); what reaches here is a write that landed, a conflict with
    another writer (on the data or, check-and-set guarded, on the metadata), or
    an outcome nobody can know yet (OutcomeUnknown).
    """
    waits = client.retry_waits()
    # Metadata an earlier attempt wrote before its data write met another writer's version: still written.
    written_before: list[str] = []
    for attempt in range(len(waits) + 1):
        decision = _decide_from_server(client, item, options)
        if not decision.anything_to_write:
            changed_fields = list(dict.fromkeys(written_before))
            return _result(
                item,
                options,
                replace(decision, changed_fields=changed_fields),
                version=decision.base_version,
                changed=bool(changed_fields),
            )
        if options.check_mode:
            return _result(item, options, decision, version=decision.base_version, changed=True)
        try:
            merged = list(dict.fromkeys([*decision.changed_fields, *written_before]))
            return _apply(client, item, options, replace(decision, changed_fields=merged))
        except CasConflict as conflict:
            if _metadata_left(decision, options, conflict):
                written_before += [name for name in decision.changed_fields if name in METADATA_FIELDS]
            if attempt == len(waits):
                break
            client.pause(random.uniform(0, CONFLICT_JITTER))
    raise VaultCertError(
        f"check-and-set conflict on {_kv2.data_path(options.mount, item.path)}: other writers kept changing it; "
        f"gave up after {len(waits) + 1} attempts"
    )


def _metadata_left(decision: Decision, options: PushOptions, conflict: CasConflict) -> bool:
    """Whether the metadata of an attempt that met a conflict is still written (the next result names it)."""
    if decision.metadata is None or not decision.data_changed or isinstance(conflict, _kv2.MetadataConflict):
        return False
    # A mark set back after the data conflict is not written; one that could not be is (MetadataLeft).
    return not _marks_anew(decision, options) or isinstance(conflict, _kv2.MetadataLeft)


def _marks_anew(decision: Decision, options: PushOptions) -> bool:
    """Whether this decision writes our mark onto a secret that did not carry it."""
    return (
        options.owner is not None
        and decision.metadata is not None
        and "custom_metadata" in decision.metadata
        and not _kv2.is_owned_by(decision.custom_metadata, options.owner)
    )


def _decide_from_server(client: VaultClient, item: PushItem, options: PushOptions) -> Decision:
    """Decide from the current version; when metadata is to be written, from a metadata read made just before.

    Every metadata write is a read-modify-write of the whole custom_metadata map: it is built from
    the metadata read and guarded by that read's metadata version, so an unchanged run costs one
    read per secret and only a run that writes metadata pays for the metadata read.
    """
    state = _read_state(client, item, options)
    decision = decide(item, state, options)
    if decision.metadata is None or state.metadata_read:
        return decision
    state = SecretState(state.current, _kv2.read_metadata(client, options.mount, item.path), metadata_read=True)
    return decide(item, state, options)


def _read_state(client: VaultClient, item: PushItem, options: PushOptions) -> SecretState:
    """The current version, and the metadata when the version policy is compared with its settings."""
    current = _kv2.read_version(client, options.mount, item.path)
    if options.version_policy.given:
        return SecretState(current, _kv2.read_metadata(client, options.mount, item.path), metadata_read=True)
    return SecretState(current)


def _apply(client: VaultClient, item: PushItem, options: PushOptions, decision: Decision) -> dict:
    version = decision.base_version
    written_metadata = None
    if decision.data_changed:
        written = _kv2.write_with_metadata(
            client,
            options.mount,
            item.path,
            decision.desired,
            cas=decision.base_version,
            metadata=decision.metadata,
            previous_metadata=decision.previous_metadata,
            metadata_cas=decision.metadata_cas,
            # A mark that landed on a secret another writer created meanwhile (a data write does not count as a
            # metadata version) goes back before deciding again: the new decision sees the secret as they left it,
            # never our own fresh mark (which adopt: false would take for ours).
            set_back_on_conflict=_marks_anew(decision, options),
        )
        version, written_metadata = written.version, written.custom_metadata
    elif decision.metadata is not None:
        _kv2.write_metadata(client, options.mount, item.path, decision.metadata, metadata_cas=decision.metadata_cas)
    return _result(item, options, decision, version=version, changed=True, custom_after=written_metadata)


def landed_on_another_owner(result: t.Mapping[str, t.Any], options: PushOptions) -> str | None:
    """A warning when a push without owner wrote into a secret whose mark names an owner, which its read did not
    show (a metadata-only secret, or one marked between the read and the write); None otherwise."""
    found = result.get("owner")
    if options.owner is not None or found is None or not result.get("changed"):
        return None
    location = _kv2.data_path(options.mount, result["path"])
    return (
        f"{location}: version {result['version']} was written (the data is written), but the write's answer shows "
        f"the secret is owned by {_kv2.shown_owner(found)} - its mark was not visible to the push's read "
        "(a secret with metadata only, or marked meanwhile); check with that owner"
    )


def _result(
    item: PushItem,
    options: PushOptions,
    decision: Decision,
    *,
    version: int,
    changed: bool,
    custom_after: dict | None = None,
) -> dict:
    """The result of one secret; ``custom_after`` is the custom_metadata the write's answer showed, when it did."""
    current = decision.current
    # In check mode: as the secret would be after the run. The write's answer wins: it is what the server holds.
    if custom_after is None:
        custom_after = decision.custom_metadata_after
    result = {
        "changed": changed,
        "mount": options.mount,
        "path": item.path,
        "version": version or None,
        "previous_version": current.version if current else None,
        "created": current is None,
        "changed_fields": decision.changed_fields if changed else [],
        "managed": _kv2.is_owned_by(custom_after, options.owner),
        "owner": _kv2.owner_of(custom_after),
        "certificate": item.summary,
    }
    if options.diff:
        before = current.data if current and current.data is not None else {}
        result["diff"] = {
            "before_header": _kv2.data_path(options.mount, item.path),
            "after_header": _kv2.data_path(options.mount, item.path),
            "before": _layouts.summarise_secret(before, fields=options.fields),
            "after": _layouts.summarise_secret(decision.desired, fields=options.fields),
        }
    return result


def push_all(client: VaultClient, items: t.Sequence[PushItem], options: PushOptions, *, batch: bool) -> list[dict]:
    """Deliver the items over the client's one login, results in input order (see _batch.run_on_mount)."""
    return _batch.run_on_mount(
        client,
        items,
        lambda client, item: push_one(client, item, options),
        mount=options.mount,
        capabilities=(lambda: needed_capabilities(items, options)) if options.check_capabilities else None,
        batch=batch,
        noun="certificate",
        concurrency=options.concurrency,
    )


def needed_capabilities(items: t.Sequence[PushItem], options: PushOptions) -> dict[str, t.Sequence[str]]:
    return {_kv2.data_path(options.mount, item.path): _health.PUSH_CAPABILITIES for item in items}
