# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollback through KV v2's version history, as ``bao kv rollback -version=N`` does.

Private to the collection.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from ansible_collections.certautopilot.vault.plugins.module_utils import _batch, _certs, _health, _kv2, _layouts
from ansible_collections.certautopilot.vault.plugins.module_utils._client import (
    VaultClient,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import (
    CasConflict,
    VaultCertError,
)


@dataclass(frozen=True)
class RollbackRequest:
    mount: str
    path: str
    version: int | None = None
    current_version: int | None = None
    check_mode: bool = False
    # Whose secret this is (the push's owner): a secret marked with another owner - without one, any owner - is
    # refused, as a push refuses it.
    owner: str | None = None


def choose_target(metadata: _kv2.SecretMetadata, request: RollbackRequest, location: str) -> int:
    """The version to restore, refusing every target that cannot be restored."""
    current = metadata.current_version
    if request.version is None:
        earlier = [n for n, state in metadata.versions.items() if n < current and state.live]
        if not earlier:
            raise VaultCertError(f"{location} has no earlier live version to roll back to (current version {current})")
        return max(earlier)
    target = request.version
    if target < 1 or target > current:
        raise VaultCertError(f"version {target} of {location} does not exist (current version {current})")
    if target < metadata.oldest_version or target not in metadata.versions:
        raise VaultCertError(
            f"version {target} of {location} was pruned: the oldest version kept is {metadata.oldest_version} "
            f"(max_versions limits the history)"
        )
    state = metadata.versions[target]
    if state.destroyed:
        raise VaultCertError(f"version {target} of {location} is destroyed and cannot be restored")
    if state.deletion_scheduled:
        raise VaultCertError(
            f"version {target} of {location} is scheduled for deletion at {state.deletion_time} "
            "(delete_version_after) and cannot be restored"
        )
    if state.deleted:
        raise VaultCertError(
            f"version {target} of {location} is deleted (deletion_time {state.deletion_time}); undelete it first"
        )
    if target == current:
        raise VaultCertError(f"version {target} of {location} is the current version; nothing to roll back to")
    return target


def prepare_requests(
    mount: str, items: t.Sequence[t.Mapping[str, t.Any]], *, check_mode: bool, owner: str | None = None
) -> list[RollbackRequest]:
    """Check the mount, the owner and every path of the run; nothing is sent before all pass."""
    _kv2.validate_path(mount, what="mount")
    _kv2.validate_owner(owner)
    for index, item in enumerate(items):
        _kv2.validate_secret_path(mount, item.get("path"), what=_kv2.item_option("secrets", index, len(items)))
    _batch.refuse_repeated_paths((item["path"] for item in items), option="secrets")
    return [
        RollbackRequest(
            mount=mount,
            path=item["path"],
            version=item.get("version"),
            current_version=item.get("current_version"),
            check_mode=check_mode,
            owner=owner,
        )
        for item in items
    ]


def rollback_all(
    client: VaultClient,
    requests: t.Sequence[RollbackRequest],
    *,
    batch: bool,
    check_capabilities: bool = False,
    concurrency: int = 1,
) -> list[dict]:
    """Roll every secret (all of one mount) back over the client's one login (see _batch.run_on_mount)."""
    return _batch.run_on_mount(
        client,
        requests,
        rollback,
        mount=requests[0].mount if requests else "",
        capabilities=(lambda: needed_capabilities(requests)) if check_capabilities else None,
        batch=batch,
        noun="secret",
        concurrency=concurrency,
    )


def needed_capabilities(requests: t.Sequence[RollbackRequest]) -> dict[str, t.Sequence[str]]:
    needs: dict[str, t.Sequence[str]] = {}
    for request in requests:
        needs[_kv2.data_path(request.mount, request.path)] = _health.ROLLBACK_DATA_CAPABILITIES
        needs[_kv2.metadata_path(request.mount, request.path)] = _health.ROLLBACK_METADATA_CAPABILITIES
    return needs


def rollback(client: VaultClient, request: RollbackRequest) -> dict:
    """Write the target version's data as a new version, with cas against the current one."""
    location = _kv2.data_path(request.mount, request.path)
    metadata = _kv2.read_metadata(client, request.mount, request.path)
    if metadata is None or metadata.current_version == 0:
        raise VaultCertError(f"{location} does not exist; nothing to roll back")
    # The metadata read the rollback decides on shows the mark: no request more.
    _kv2.refuse_other_owner(metadata.custom_metadata, request.owner, location)
    current = metadata.current_version
    guard_broken = request.current_version is not None and request.current_version != current
    guard_error = VaultCertError(
        f"current version of {location} is {current}, not {request.current_version} "
        f"(current_version guard): someone changed it since; nothing written"
    )
    if guard_broken and request.version is None:
        raise guard_error
    try:
        target = choose_target(metadata, request, location)
    except VaultCertError:
        if guard_broken:
            raise guard_error from None
        raise
    target_data = _kv2.read_version(client, request.mount, request.path, target)
    if target_data is None or target_data.data is None:
        raise VaultCertError(f"version {target} of {location} could not be read (deleted or destroyed meanwhile)")
    current_data = _kv2.read_version(client, request.mount, request.path, current)
    before = (current_data.data if current_data else None) or {}
    changed = current_data is None or current_data.data != target_data.data
    if guard_broken and changed:
        # An explicit version whose data is already current is a rollback that already happened:
        # re-running it is ok. Anything else moved since the guard was taken.
        raise guard_error
    version = current
    if changed and not request.check_mode:
        version = _write_target(client, request, target_data.data, current, location, metadata)
    return {
        "changed": changed,
        "mount": request.mount,
        "path": request.path,
        "version": version,
        "previous_version": current,
        "restored_version": target,
        "diff": {
            "before_header": f"{location} (version {current})",
            "after_header": f"{location} (data of version {target})",
            "before": _layouts.summarise_secret(before),
            "after": _layouts.summarise_secret(target_data.data),
        },
    }


def _write_target(
    client: VaultClient,
    request: RollbackRequest,
    data: dict,
    current: int,
    location: str,
    metadata: _kv2.SecretMetadata,
) -> int:
    """Write the target's data with cas, and its certificate summary into custom_metadata first when one is kept.

    The custom_metadata write is guarded by the metadata version read with the target (where the server
    offers metadata check-and-set): another writer's metadata is never overwritten, and after a data
    conflict ours is set back under the same guard. What could not be set back is reported.
    """
    # A conflict is not re-decided: re-deciding would pick a new target and
    # could silently undo the other writer's version. A lost answer is
    # resolved by _kv2.write, which reads the secret back.
    custom_metadata = metadata.custom_metadata
    restored = restored_custom_metadata(custom_metadata, data)
    try:
        return _kv2.write_with_metadata(
            client,
            request.mount,
            request.path,
            data,
            cas=current,
            metadata=None if restored is None else {"custom_metadata": restored},
            previous_metadata={"custom_metadata": custom_metadata or {}},
            metadata_cas=metadata.current_metadata_version,
            # "Nothing written" must hold after a conflict: our custom_metadata goes back under the guard.
            set_back_on_conflict=True,
        ).version
    except _kv2.MetadataLeft as left:
        raise VaultCertError(
            f"{location} changed while rolling back (it is no longer version {current}); its data was not "
            f"written, but: {left}. Run again to decide against the new version"
        ) from None
    except CasConflict:
        raise VaultCertError(
            f"{location} changed while rolling back (it is no longer version {current}); nothing written, "
            "run again to decide against the new version"
        ) from None


def targets_from_results(recorded: t.Iterable[t.Mapping[str, t.Any]], *, guard: bool = True) -> list[dict]:
    """The rollback that undoes each recorded push, as ``secrets`` items of vault_cert_rollback.

    A recorded push result goes back to its ``previous_version``, guarded by the ``version`` it
    left (unless ``guard`` is false). A push that created the secret, changed nothing, or wrote
    only metadata (``version`` equal to ``previous_version``) has nothing to undo and is left
    out. Anything else with a ``path`` (a certificate batch item, say) becomes a plain
    ``{path}``: roll back to the newest earlier live version.
    """
    targets = []
    for entry in recorded:
        if "previous_version" not in entry:
            targets.append({"path": entry["path"]})
            continue
        previous, version = entry.get("previous_version"), entry.get("version")
        if not entry.get("changed", True) or previous is None or version == previous:
            continue
        target = {"path": entry["path"], "version": previous}
        if guard:
            target["current_version"] = version
        targets.append(target)
    return targets


def restored_custom_metadata(existing: dict | None, data: dict) -> dict | None:
    """The custom metadata that describes the restored certificate, when a push recorded one there.

    A push with custom_metadata: true writes the certificate's cn, serial, not_after and
    fingerprint; after a rollback they must describe the certificate the secret holds again.
    None when there is nothing to update (no such record, or no readable certificate).
    """
    if not existing or not all(key in existing for key in _certs.CUSTOM_METADATA_KEYS):
        return None
    certificate = data.get("certificate")
    if not isinstance(certificate, str):
        return None
    try:
        summary = _certs.certificate_info(certificate)
    except VaultCertError:
        return None
    desired = {**existing, **_certs.certificate_custom_metadata(summary)}
    return desired if desired != existing else None
