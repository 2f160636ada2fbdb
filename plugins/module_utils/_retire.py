# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Taking certificate secrets out of KV v2: soft-delete, destroy or purge. Private to the collection.

Every decision is taken from one metadata read per secret (its versions, their states and the
custom metadata that says whether this collection manages it); a change is one write, except a purge,
which guards its DELETE as far as the server allows (see purge()).
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from ansible_collections.certautopilot.vault.plugins.module_utils import _batch, _kv2
from ansible_collections.certautopilot.vault.plugins.module_utils._client import VaultClient
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import (
    CasConflict,
    OutcomeUnknown,
    VaultCertError,
)

DELETE = "delete"
DESTROY = "destroy"
PURGE = "purge"
MODES = (DELETE, DESTROY, PURGE)

# What each mode writes to, and the capabilities that takes (check_capabilities); every mode reads the metadata first.
METADATA_CAPABILITIES = ("read",)
MODE_WRITES: dict[str, tuple[t.Callable[[str, str], str], tuple[str, ...]]] = {
    DELETE: (_kv2.delete_path, ("update",)),
    DESTROY: (_kv2.destroy_path, ("update",)),
    # update: the purge sets cas_required before it deletes (see purge()).
    PURGE: (_kv2.metadata_path, ("update", "delete")),
}

# How a diff shows the state of one version; never its data.
LIVE = "live"
DELETED = "deleted"
DESTROYED = "destroyed"
DELETION_SCHEDULED = "deletion scheduled"


@dataclass(frozen=True)
class RetireRequest:
    mount: str
    path: str
    mode: str = DELETE
    current_version: int | None = None
    require_managed: bool = True
    check_mode: bool = False
    # With an owner, require_managed means "marked with this owner"; without, "carries managed_by, names no owner".
    owner: str | None = None


@dataclass(frozen=True)
class RetirePlan:
    """What retiring one secret takes, decided from its metadata (None: there is no secret)."""

    # The current version when the metadata was read; None when there is no secret.
    version: int | None
    # Versions to soft-delete (delete mode: the current one, at most).
    delete: tuple[int, ...] = ()
    # Versions whose data goes for good: destroyed (destroy), or gone with the metadata (purge).
    destroy: tuple[int, ...] = ()
    purge: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.delete or self.destroy or self.purge)


def prepare_requests(
    mount: str,
    items: t.Sequence[t.Mapping[str, t.Any]],
    *,
    mode: str,
    require_managed: bool,
    check_mode: bool,
    owner: str | None = None,
) -> list[RetireRequest]:
    """Check the mount, the mode, the owner and every path of the run; nothing is sent before all pass."""
    _kv2.validate_path(mount, what="mount")
    _kv2.validate_owner(owner)
    if mode not in MODES:
        raise VaultCertError(f"mode must be one of {', '.join(MODES)}")
    for index, item in enumerate(items):
        _kv2.validate_secret_path(mount, item.get("path"), what=_kv2.item_option("secrets", index, len(items)))
    _batch.refuse_repeated_paths((item["path"] for item in items), option="secrets")
    return [
        RetireRequest(
            mount=mount,
            path=item["path"],
            mode=mode,
            current_version=item.get("current_version"),
            require_managed=require_managed,
            check_mode=check_mode,
            owner=owner,
        )
        for item in items
    ]


# -- decisions (pure) ------------------------------------------------------------


def refuse_unmanaged(metadata: _kv2.SecretMetadata, request: RetireRequest, location: str) -> None:
    """With require_managed, refuse a secret without the mark (with an owner: without the mark naming it).

    Without an owner, a mark naming an owner is refused as the push refuses it: that owner's retirement
    is the one to take it out.
    """
    if not request.require_managed:
        return
    if request.owner is not None:
        if not _kv2.is_owned_by(metadata.custom_metadata, request.owner):
            raise VaultCertError(
                f"{location} is not marked with owner {request.owner}: its custom_metadata lacks "
                f"{_kv2.MANAGED_BY_KEY}={_kv2.MANAGED_BY} with {_kv2.OWNER_KEY}={request.owner}; "
                f"set require_managed: false to {request.mode} it anyway; nothing written"
            )
        return
    _kv2.refuse_other_owner(metadata.custom_metadata, None, location)
    if not _kv2.is_managed(metadata.custom_metadata):
        raise VaultCertError(
            f"{location} is not managed by this collection: its custom_metadata has no "
            f"{_kv2.MANAGED_BY_KEY}={_kv2.MANAGED_BY}; set require_managed: false to {request.mode} it anyway; "
            "nothing written"
        )


def refuse_moved_on(metadata: _kv2.SecretMetadata, request: RetireRequest, location: str) -> None:
    if request.current_version is not None and request.current_version != metadata.current_version:
        raise VaultCertError(
            f"current version of {location} is {metadata.current_version}, not {request.current_version} "
            "(current_version guard): someone changed it since; nothing written"
        )


def versions_to_delete(metadata: _kv2.SecretMetadata) -> tuple[int, ...]:
    """The current version, unless it is already deleted or destroyed (or there is none).

    A deletion that delete_version_after scheduled for later still leaves the data readable
    until then: retiring deletes it now.
    """
    return (metadata.current_version,) if metadata.readable(metadata.current_version) else ()


def versions_to_destroy(metadata: _kv2.SecretMetadata) -> tuple[int, ...]:
    """Every kept version whose data is not destroyed yet, deleted ones included (their data is still stored)."""
    return tuple(sorted(number for number, state in metadata.versions.items() if not state.destroyed))


def plan(metadata: _kv2.SecretMetadata | None, request: RetireRequest, location: str) -> RetirePlan:
    """What retiring the secret takes; refuses an unmanaged secret and a broken guard.

    No secret at all is already retired, whatever the mode and guard: a rerun of a purge is ok.
    """
    if metadata is None:
        return RetirePlan(version=None)
    refuse_unmanaged(metadata, request, location)
    refuse_moved_on(metadata, request, location)
    version = metadata.current_version
    if request.mode == DELETE:
        return RetirePlan(version=version, delete=versions_to_delete(metadata))
    if request.mode == DESTROY:
        return RetirePlan(version=version, destroy=versions_to_destroy(metadata))
    return RetirePlan(version=version, destroy=versions_to_destroy(metadata), purge=True)


def version_states(metadata: _kv2.SecretMetadata | None) -> dict[str, t.Any]:
    """The secret as a diff shows it: its current version and the state of each kept version, no data."""
    if metadata is None:
        return {}
    return {
        "current_version": metadata.current_version,
        "versions": {str(number): _state_name(state) for number, state in sorted(metadata.versions.items())},
    }


def _state_name(state: _kv2.VersionState) -> str:
    if state.destroyed:
        return DESTROYED
    if state.deletion_scheduled:
        return DELETION_SCHEDULED
    return DELETED if state.deleted else LIVE


def after_states(metadata: _kv2.SecretMetadata | None, decided: RetirePlan) -> dict[str, t.Any]:
    """version_states() as they are once ``decided`` is carried out."""
    if metadata is None or decided.purge:
        return {}
    before = version_states(metadata)
    versions = dict(before["versions"])
    versions.update({str(number): DELETED for number in decided.delete})
    versions.update({str(number): DESTROYED for number in decided.destroy})
    return {**before, "versions": versions}


# -- retiring (network) ----------------------------------------------------------


def retire_all(
    client: VaultClient,
    requests: t.Sequence[RetireRequest],
    *,
    batch: bool,
    check_capabilities: bool = False,
    concurrency: int = 1,
) -> list[dict]:
    """Retire every secret (all of one mount and mode) over the client's one login (see _batch.run_on_mount)."""
    return _batch.run_on_mount(
        client,
        requests,
        retire,
        mount=requests[0].mount if requests else "",
        capabilities=(lambda: needed_capabilities(requests)) if check_capabilities else None,
        batch=batch,
        noun="secret",
        concurrency=concurrency,
    )


def needed_capabilities(requests: t.Sequence[RetireRequest]) -> dict[str, t.Sequence[str]]:
    """The capabilities a run needs, by API path: a metadata read, and the mode's write."""
    needs: dict[str, t.Sequence[str]] = {}
    for request in requests:
        location_of, capabilities = MODE_WRITES[request.mode]
        needs[_kv2.metadata_path(request.mount, request.path)] = METADATA_CAPABILITIES
        written = location_of(request.mount, request.path)
        needs[written] = tuple(dict.fromkeys((*needs.get(written, ()), *capabilities)))
    return needs


def retire(client: VaultClient, request: RetireRequest) -> dict:
    """Retire one secret as its mode says: one metadata read and, when anything changes, one write (a purge: three
    requests, see purge())."""
    location = _kv2.data_path(request.mount, request.path)
    metadata = _kv2.read_metadata(client, request.mount, request.path)
    decided = plan(metadata, request, location)
    destroyed = decided.destroy
    if decided.changed and not request.check_mode:
        destroyed = carry_out(client, request, decided, metadata)
    return {
        "changed": decided.changed,
        "mount": request.mount,
        "path": request.path,
        "mode": request.mode,
        "version": decided.version,
        "destroyed_versions": list(destroyed),
        "diff": {
            "before_header": f"{location} ({_header(metadata)})",
            "after_header": f"{location} (after {request.mode})",
            "before": version_states(metadata),
            "after": after_states(metadata, decided),
        },
    }


def _header(metadata: _kv2.SecretMetadata | None) -> str:
    return "no such secret" if metadata is None else f"current version {metadata.current_version}"


def carry_out(
    client: VaultClient, request: RetireRequest, decided: RetirePlan, metadata: _kv2.SecretMetadata | None
) -> tuple[int, ...]:
    """Carry out ``decided``; returns the versions whose data it removed for good."""
    if decided.purge and metadata is not None:
        return purge(client, request, metadata)
    if decided.destroy:
        _kv2.destroy_versions(
            client, request.mount, request.path, decided.destroy, created_time=_created_time(metadata)
        )
    elif decided.delete:
        _kv2.delete_versions(client, request.mount, request.path, decided.delete, created_time=_created_time(metadata))
    return decided.destroy


def _created_time(metadata: _kv2.SecretMetadata | None) -> str:
    return "" if metadata is None else metadata.created_time


def purge(client: VaultClient, request: RetireRequest, metadata: _kv2.SecretMetadata) -> tuple[int, ...]:
    """Delete the secret's metadata and versions, guarded as far as the server allows; the versions destroyed.

    The DELETE itself takes no guard, so the purge first sets cas_required under a metadata
    check-and-set (writers without check-and-set are refused from then on), reads the metadata
    again, and deletes only while it still shows the version planned on. What is left open: a
    writer with check-and-set against that version, between that read and the DELETE.
    """
    guard = _kv2.require_check_and_set(client, request.mount, request.path, metadata)
    try:
        now = _kv2.read_metadata(client, request.mount, request.path)
        if now is None:
            # Purged by someone else meanwhile: nothing left for this run to destroy.
            return ()
        refuse_written_during_purge(now, guard, _kv2.data_path(request.mount, request.path))
        _kv2.purge_metadata(client, request.mount, request.path, guard)
    except (OutcomeUnknown, _kv2.SecretRecreated):
        # A secret re-created at the path is not ours: its cas_required is theirs to keep.
        raise
    except VaultCertError as refusal:
        raise _after_releasing(client, request, guard, refusal) from None
    return versions_to_destroy(now)


def refuse_written_during_purge(now: _kv2.SecretMetadata, guard: _kv2.PurgeGuard, location: str) -> None:
    if now.created_time != guard.created_time:
        raise _kv2.SecretRecreated(
            f"{location} was purged and created anew by someone else during the purge; nothing destroyed, and the "
            "new secret was not touched (run again to decide on it as it is)"
        )
    if now.current_version != guard.current_version:
        raise CasConflict(
            f"version {now.current_version} of {location} was written during the purge, after version "
            f"{guard.current_version} was read; nothing destroyed, the secret is kept "
            "(run again to decide on it as it is)"
        )
    if guard.metadata_version is not None and now.current_metadata_version != guard.metadata_version:
        raise CasConflict(
            f"the metadata of {location} was changed by another writer during the purge; nothing destroyed, "
            "the secret is kept (run again to decide on it as it is)"
        )


def _after_releasing(
    client: VaultClient, request: RetireRequest, guard: _kv2.PurgeGuard, refusal: VaultCertError
) -> VaultCertError:
    """``refusal``, once cas_required is put back as it was; says so when that fails."""
    try:
        _kv2.release_check_and_set(client, request.mount, request.path, guard)
    except VaultCertError as exc:
        return type(refusal)(
            f"{refusal}; cas_required, which the purge set on the secret, may still be set: {exc}",
            result=refusal.result,
        )
    return refusal
