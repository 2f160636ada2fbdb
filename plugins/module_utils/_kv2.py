# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The KV v2 API: mount check, reads, check-and-set writes, metadata.

Private to the collection. The only file that knows KV v2's URLs and answers.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ansible_collections.certautopilot.vault.plugins.module_utils import _version_policy, _write_outcome
from ansible_collections.certautopilot.vault.plugins.module_utils._client import (
    DESTRUCTIVE,
    WRITE,
    VaultClient,
    api_path,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import (
    CasConflict,
    OutcomeUnknown,
    VaultCertError,
)

# KV v2 keeps 10 versions when max_versions is 0 (unset).
DEFAULT_MAX_VERSIONS = 10
# The ownership mark a push with an owner records in the secret's custom_metadata: the report
# (vault_cert_info) shows it, and the retirement (vault_cert_retire) refuses a secret without it. Anyone who may
# write the secret's custom_metadata can write or remove it too: it says who manages a secret, it proves nothing.
MANAGED_BY_KEY = "managed_by"
MANAGED_BY = "certautopilot.vault"
OWNER_KEY = "certautopilot_owner"
OWNER_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class SecretVersion:
    """One version of a secret as a data read returns it."""

    version: int
    data: dict | None
    deleted: bool = False
    destroyed: bool = False
    custom_metadata: dict | None = None
    # When this version was written, as the server prints it (RFC 3339, nanoseconds).
    created_time: str = ""


@dataclass(frozen=True)
class VersionState:
    deletion_time: str = ""
    destroyed: bool = False

    @property
    def deleted(self) -> bool:
        # A deletion_time in the future is a deletion scheduled by delete_version_after:
        # the version is about to disappear, so it counts as deleted already.
        return bool(self.deletion_time)

    @property
    def deletion_scheduled(self) -> bool:
        """True while a delete_version_after deletion is still in the future."""
        if not self.deletion_time:
            return False
        try:
            # Vault prints nanoseconds, which datetime cannot parse; seconds are precise enough.
            moment = datetime.strptime(self.deletion_time[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        except ValueError:
            return False
        return moment > datetime.now(timezone.utc)

    @property
    def live(self) -> bool:
        return not (self.deleted or self.destroyed)


@dataclass(frozen=True)
class SecretMetadata:
    current_version: int
    oldest_version: int
    max_versions: int
    versions: dict[int, VersionState] = field(default_factory=dict)
    custom_metadata: dict | None = None
    cas_required: bool = False
    # In seconds; 0 keeps versions until max_versions pushes them out.
    delete_version_after: int = 0
    # What a metadata check-and-set (metadata_cas) compares with: OpenBao counts metadata writes, not data
    # writes. None when the server does not report it (Vault).
    current_metadata_version: int | None = None
    # When the secret (its metadata) was created, as the server prints it: what tells a secret re-created at the
    # same path (purged, then written anew) from the one read before, whose version numbers it may repeat.
    created_time: str = ""

    def readable(self, number: int) -> bool:
        """Whether version ``number``'s data can still be read: kept, not destroyed, and not deleted - a
        deletion delete_version_after scheduled for later leaves it readable until then."""
        state = self.versions.get(number)
        return state is not None and not state.destroyed and (not state.deleted or state.deletion_scheduled)


def is_managed(custom_metadata: t.Mapping[str, t.Any] | None) -> bool:
    """True when a secret's custom_metadata holds this collection's tag."""
    return (custom_metadata or {}).get(MANAGED_BY_KEY) == MANAGED_BY


def validate_owner(owner: t.Any, *, option: str = "owner") -> None:
    """Refuse an owner that is not 1-64 characters of A-Za-z0-9._- (None is no owner), before any request."""
    if owner is not None and not (isinstance(owner, str) and OWNER_PATTERN.fullmatch(owner)):
        raise VaultCertError(f"{option} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'; nothing written")


def owner_of(custom_metadata: t.Mapping[str, t.Any] | None) -> str | None:
    """The owner a secret's custom_metadata names (whatever its value), None when it names none."""
    owner = (custom_metadata or {}).get(OWNER_KEY)
    return None if owner is None else str(owner)


def shown_owner(owner: str) -> str:
    """An owner read from the server, fit for a message: quoted only when it is a valid owner name."""
    return owner if OWNER_PATTERN.fullmatch(owner) else "an owner whose name is not a valid owner name"


def _give_owner(owner: str) -> str:
    """What to do about a secret ``owner`` (read from the server) owns: an invalid name cannot be given as owner."""
    return f"give owner {owner} or another path" if OWNER_PATTERN.fullmatch(owner) else "use another path"


def refuse_other_owner(custom_metadata: t.Mapping[str, t.Any] | None, owner: str | None, location: str) -> None:
    """Refuse to write onto a secret whose mark names another owner (without ``owner``: any owner); nothing written.

    One rule for every write that adds a version (push, rollback): a mark naming an owner is respected
    unless that owner is given.
    """
    found = owner_of(custom_metadata)
    if found is None or found == owner:
        return
    if owner is None:
        raise VaultCertError(f"{location} is owned by {shown_owner(found)}: {_give_owner(found)}; nothing written")
    raise VaultCertError(
        f"{location} is owned by {shown_owner(found)}, not by owner {owner}: "
        "another owner's secret is never taken over; nothing written"
    )


def is_owned_by(custom_metadata: t.Mapping[str, t.Any] | None, owner: str | None) -> bool:
    """True when the secret carries this collection's mark naming ``owner`` (None: the mark without an owner)."""
    return is_managed(custom_metadata) and owner_of(custom_metadata) == owner


def with_mark(custom_metadata: t.Mapping[str, t.Any] | None, owner: str) -> dict:
    """``custom_metadata`` with this collection's mark naming ``owner``, every other key kept."""
    return {**(custom_metadata or {}), MANAGED_BY_KEY: MANAGED_BY, OWNER_KEY: owner}


MAX_PATH_LENGTH = 1024


# Jinja's openers: a path is data, and recorded where Ansible may read it back as variables (a results file,
# set_stats), where one of these would run as code.
TEMPLATE_OPENERS = ("{{", "{%", "{#")
TEMPLATE_SYNTAX = "it holds template syntax ({{, {% or {#), which a path never may"


# The segments the KV v2 API puts between the mount and a secret's path.
API_SEGMENTS = ("data", "metadata")


def validate_path(path: str | None, *, what: str = "path") -> None:
    """Refuse a path that Vault would normalise into another secret, or that would act as a template, before any
    request. The message names ``what`` (the option, the item) and never quotes the path: it failed the check,
    so it may hold a template, a credential pasted by mistake or anything else."""
    problem = _path_problem(path or "")
    if problem:
        raise VaultCertError(f"invalid {what}: {problem}")


def validate_secret_path(mount: str, path: str | None, *, what: str = "path") -> None:
    """validate_path(), and refuse a path that repeats the mount and the API's data/ or metadata/ segment.

    ``secret/data/certs/www`` is how the API, hvac and ``bao read`` spell a secret; the module adds that part
    itself, so taken as a path below the mount it would nest the secret at secret/data/secret/data/certs/www.
    """
    validate_path(path, what=what)
    for segment in API_SEGMENTS:
        prefix = f"{mount.strip('/')}/{segment}/"
        if path.startswith(prefix) or path == prefix[:-1]:
            meant = path[len(prefix) :]
            raise VaultCertError(
                f"invalid {what}: it starts with the mount and the API's {segment}/ segment ({prefix}), which the "
                f"module adds itself; give the path below the mount{': ' + meant if meant else ''}"
            )


def _path_problem(path: str) -> str:
    if not path:
        return "it is empty"
    if not isinstance(path, str):
        return "it is not a string"
    if any(opener in path for opener in TEMPLATE_OPENERS):
        return TEMPLATE_SYNTAX
    if len(path) > MAX_PATH_LENGTH:
        return f"it is longer than {MAX_PATH_LENGTH} characters"
    if path.startswith("/") or path.endswith("/"):
        return "it must not start or end with '/'"
    if any(char.isspace() or not char.isprintable() for char in path):
        return "it holds whitespace or a control character"
    if any(char in path for char in "?#%\\"):
        return "it holds one of ? # % \\"
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            return "it holds an empty, '.' or '..' segment"
    return ""


def data_path(mount: str, path: str) -> str:
    return api_path(mount, "data", path)


def metadata_path(mount: str, path: str) -> str:
    return api_path(mount, "metadata", path)


def delete_path(mount: str, path: str) -> str:
    """Where versions are soft-deleted (``update`` on it; undone by ``<mount>/undelete/<path>``)."""
    return api_path(mount, "delete", path)


def destroy_path(mount: str, path: str) -> str:
    """Where versions' data is destroyed for good (``update`` on it)."""
    return api_path(mount, "destroy", path)


def check_mount(client: VaultClient, mount: str) -> None:
    """Refuse anything but a KV v2 mount, before a single write."""
    reply = client.request("GET", api_path("sys/internal/ui/mounts", mount), needs=("read",), accept=(403, 404))
    if reply.status in (403, 404):
        raise VaultCertError(
            f"mount {mount!r} not found, or the token may not use it "
            f"(permission denied on sys/internal/ui/mounts/{mount})"
        )
    info = reply.data
    owner = str(info.get("path") or "").strip("/")
    if owner != mount.strip("/"):
        # Vault answers for the mount that holds the path: "secret/data" is inside "secret",
        # and writing there would land in another place than the one reported.
        raise VaultCertError(
            f"mount {mount!r} is not the path of a KV v2 mount: it lies inside mount {owner!r}; "
            f"set mount to {owner!r} and put the rest into the secret's path"
        )
    version = str((info.get("options") or {}).get("version") or "1")
    if info.get("type") not in ("kv", "generic"):
        raise VaultCertError(
            f"mount {mount!r} is a {info.get('type')} engine, not KV; this collection supports only KV v2"
        )
    if version != "2":
        raise VaultCertError(
            f"mount {mount!r} is a KV v1 engine: this collection supports only KV v2 "
            "(remount it as KV v2 or migrate it with 'bao kv enable-versioning')"
        )


def _version_from(body: dict) -> SecretVersion | None:
    payload = body.get("data") or {}
    metadata = payload.get("metadata") or {}
    if not metadata.get("version"):
        return None
    return SecretVersion(
        version=int(metadata["version"]),
        data=payload.get("data"),
        deleted=bool(metadata.get("deletion_time")),
        destroyed=bool(metadata.get("destroyed")),
        custom_metadata=metadata.get("custom_metadata"),
        created_time=str(metadata.get("created_time") or ""),
    )


def read_version(client: VaultClient, mount: str, path: str, version: int | None = None) -> SecretVersion | None:
    """A version (the current one by default); None when the secret does not exist.

    A deleted or destroyed version answers 404 but still carries its metadata,
    which is how its number is known; its ``data`` is None.
    """
    location = data_path(mount, path)
    if version is not None:
        location += f"?version={int(version)}"
    reply = client.request("GET", location, needs=("read",), accept=(404,))
    found = _version_from(reply.body)
    if found is None and reply.status != 404:
        # Taking this for "no such secret" would decide on nothing; cas still guards, but say what is wrong.
        raise VaultCertError(
            f"GET {location} answered HTTP {reply.status} without a KV v2 version; "
            f"is {client.settings.url} a Vault server, or a proxy that rewrites its answers?"
        )
    return found


def read_metadata(client: VaultClient, mount: str, path: str) -> SecretMetadata | None:
    reply = client.request("GET", metadata_path(mount, path), needs=("read",), accept=(404,))
    if reply.status == 404:
        return None
    meta = reply.data
    versions = {
        int(number): VersionState(
            deletion_time=state.get("deletion_time") or "", destroyed=bool(state.get("destroyed"))
        )
        for number, state in (meta.get("versions") or {}).items()
    }
    return SecretMetadata(
        current_version=int(meta.get("current_version") or 0),
        oldest_version=int(meta.get("oldest_version") or 0),
        max_versions=int(meta.get("max_versions") or 0),
        versions=versions,
        custom_metadata=meta.get("custom_metadata"),
        cas_required=bool(meta.get("cas_required")),
        delete_version_after=_version_policy.duration_seconds(
            meta.get("delete_version_after") or 0, option="delete_version_after"
        ),
        current_metadata_version=_int_or_none(meta.get("current_metadata_version")),
        created_time=str(meta.get("created_time") or ""),
    )


def _int_or_none(value: t.Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def list_keys(client: VaultClient, mount: str, folder: str) -> list[str]:
    """The keys right under ``folder`` ("" for the whole mount); a key ending in "/" is a folder.

    A folder that holds nothing (or does not exist) answers 404: no keys. A policy needs ``list``
    on ``<mount>/metadata/<folder>/``; a 403 raises PermissionDenied.
    """
    # The trailing slash is how the CLI lists too; a policy's "certs/*" glob matches "certs/".
    location = metadata_path(mount, folder) + "/"
    reply = client.request("LIST", location, needs=("list",), accept=(404,))
    if reply.status == 404:
        return []
    keys = reply.data.get("keys")
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise VaultCertError(
            f"LIST {location} answered HTTP {reply.status} without a list of keys; "
            f"is {client.settings.url} a Vault server, or a proxy that rewrites its answers?"
        )
    return keys


def read_mount_max_versions(client: VaultClient, mount: str) -> int | None:
    """The mount's max_versions (0 means 10), or None when the token may not read the config."""
    reply = client.request("GET", api_path(mount, "config"), accept=(403, 404))
    if reply.status != 200:
        return None
    return int(reply.data.get("max_versions") or 0)


@dataclass(frozen=True)
class Written:
    """A version this collection wrote."""

    version: int
    # The secret's custom_metadata as the write's answer showed it; None when a read-back settled a lost answer.
    custom_metadata: dict | None = None


def write(client: VaultClient, mount: str, path: str, data: dict, *, cas: int) -> Written:
    """Write ``data`` as a new version with check-and-set against ``cas``; returns the version written.

    A write whose answer does not prove it was refused is never sent again
    blindly: the secret is read back. Version ``cas + 1`` holding ``data`` is
    our write; a secret still at ``cas`` means it did not land, and it is sent
    again; anyone else's version there is a CasConflict. OutcomeUnknown leaves
    here only when the reads cannot tell, or the last write may still be in
    progress (its connection was lost, or a gateway timed out on it).
    """

    def send(after_unknown: bool) -> Written:
        try:
            return _send_write(client, mount, path, data, cas=cas)
        except CasConflict:
            # After an unanswered write, the version that beat this one may be that write.
            if after_unknown and _write_landed(client, mount, path, data, cas=cas):
                return Written(cas + 1)
            raise

    def landed() -> Written | None:
        return Written(cas + 1) if _write_landed(client, mount, path, data, cas=cas) else None

    return _write_outcome.sent_once(
        client, send, landed, proof=f"reading {data_path(mount, path)} back shows it was not written"
    )


def _write_landed(client: VaultClient, mount: str, path: str, data: dict, *, cas: int) -> bool:
    """After a write's answer was lost: did it land? CasConflict when another writer's version took its place."""
    location = data_path(mount, path)
    try:
        current = read_version(client, mount, path)
        if (current.version if current else 0) == cas:
            return False
        if current is not None and current.version > cas:
            ours = current if current.version == cas + 1 else read_version(client, mount, path, cas + 1)
            if ours is not None and ours.data == data:
                return True
    except VaultCertError as exc:
        raise OutcomeUnknown(
            f"the write to {location} was sent but its answer was lost, and reading it back failed: {exc}; "
            "the write may or may not have been applied (run again to find out)"
        ) from None
    raise CasConflict(f"check-and-set conflict on {location}: another writer changed it since version {cas}")


def _send_write(client: VaultClient, mount: str, path: str, data: dict, *, cas: int) -> Written:
    location = data_path(mount, path)
    reply = client.request(
        "POST",
        location,
        json={"options": {"cas": cas}, "data": data},
        kind=WRITE,
        needs=("create", "update") if cas == 0 else ("update",),
        accept=(400,),
    )
    if reply.status == 400:
        errors = "; ".join(str(error) for error in reply.body.get("errors") or [])
        if "check-and-set" in errors:
            raise CasConflict(f"check-and-set conflict on {location}: another writer changed it since version {cas}")
        raise VaultCertError(f"POST {location} failed with HTTP 400: {errors}")
    version = reply.data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        # Not Vault's answer (a proxy's page, say): the write may or may not have been applied.
        raise OutcomeUnknown(
            f"POST {location} answered HTTP {reply.status} without the new version number; "
            f"is {client.settings.url} a Vault server, or a proxy that rewrites its answers?"
        )
    # Vault answers null for a secret without custom metadata; an answer without the key does not say.
    custom_metadata = reply.data.get("custom_metadata", ...)
    if custom_metadata is None:
        custom_metadata = {}
    return Written(version, custom_metadata if isinstance(custom_metadata, dict) else None)


class MetadataLeft(CasConflict):
    """The data write met another writer's version after our metadata write, which could not be set back.

    The message says what was left; the caller may still decide again from a fresh read.
    """


def write_with_metadata(
    client: VaultClient,
    mount: str,
    path: str,
    data: dict,
    *,
    cas: int,
    metadata: dict | None,
    previous_metadata: dict | None,
    metadata_cas: int | None = None,
    set_back_on_conflict: bool = False,
) -> Written:
    """write(), with the secret's metadata (``metadata``, as the metadata API takes it) written first when given.

    Metadata first: a token that may not write it is refused before any data is written, and so is a
    metadata write that another writer's metadata change beat (``metadata_cas``, the metadata version
    read before: a MetadataConflict). When the data write is then refused (or, with
    ``set_back_on_conflict``, meets another writer's version), the metadata is set back to
    ``previous_metadata`` - guarded by the version our write made, so another writer's metadata
    written since is never overwritten; when it cannot be set back, the error says so (MetadataLeft
    after a conflict). After an unknown outcome it is left (the data may have landed) and the error says so. After a
    conflict without ``set_back_on_conflict`` it is left too: the caller decides again from a fresh
    read, and another run may already have read our metadata and acted on it (a mark it saw).
    """
    if metadata is None:
        return write(client, mount, path, data, cas=cas)
    write_metadata(client, mount, path, metadata, metadata_cas=metadata_cas)
    try:
        return write(client, mount, path, data, cas=cas)
    except OutcomeUnknown as unknown:
        # Whatever became of the data, the metadata is on the server: say so, as a refusal says what was left.
        raise OutcomeUnknown(
            f"{unknown}; the secret's metadata ({_written_names(metadata)}), written before it, is left as written",
            answered=unknown.answered,
            result=unknown.result,
        ) from None
    except CasConflict:
        if not set_back_on_conflict:
            raise
        left = _set_back(client, mount, path, previous_metadata, written_version=_after(metadata_cas))
        if left is None:
            raise
        raise MetadataLeft(f"check-and-set conflict on {data_path(mount, path)}; {left}") from None
    except VaultCertError as refusal:
        left = _set_back(client, mount, path, previous_metadata, written_version=_after(metadata_cas))
        if left is None:
            raise
        raise type(refusal)(f"{refusal}; {left}", result=refusal.result) from None


def _written_names(metadata: dict) -> str:
    """How a message names what a metadata write wrote: custom_metadata, settings, or both."""
    settings = sorted(name for name in metadata if name != "custom_metadata")
    names = (["custom_metadata"] if "custom_metadata" in metadata else []) + settings
    return ", ".join(names)


def _after(metadata_cas: int | None) -> int | None:
    """The metadata version a guarded write made: the server counts one up from the version it matched."""
    return None if metadata_cas is None else metadata_cas + 1


def _set_back(
    client: VaultClient, mount: str, path: str, previous_metadata: dict | None, *, written_version: int | None
) -> str | None:
    """Put back the metadata a refused data write's metadata replaced; what was left, None when it was put back.

    Unguarded (a server without metadata check-and-set) it is not put back: another writer may have
    written the metadata since ours, and theirs would be lost.
    """
    if written_version is None:
        return (
            "the secret's custom_metadata, written just before, was left as written (this server offers no "
            "metadata check-and-set to set it back without risking another writer's change)"
        )
    try:
        write_metadata(client, mount, path, previous_metadata or {"custom_metadata": {}}, metadata_cas=written_version)
    except CasConflict:
        return (
            "the secret's custom_metadata, written just before, was left as written: another writer has "
            "changed the metadata since"
        )
    except VaultCertError as exc:
        return f"the secret's metadata, written just before, could not be set back: {exc}"
    return None


class MetadataConflict(CasConflict):
    """Another writer changed the secret's metadata since the version our metadata write was guarded by."""


def write_metadata(
    client: VaultClient, mount: str, path: str, metadata: dict, *, metadata_cas: int | None = None
) -> None:
    """Set the secret's metadata settings in ``metadata``; the others are left as they are.

    ``custom_metadata``, when given, replaces the whole map: pass every key to keep. With
    ``metadata_cas`` (the metadata version read before; 0 for a secret without metadata) the server
    refuses the write when anyone changed the metadata since (MetadataConflict), so no key another
    writer set in between is lost. A guarded write whose answer was lost is never sent again blindly:
    the metadata is read back. Unguarded, it is an idempotent request: writing it twice is harmless.
    """
    location = metadata_path(mount, path)
    if metadata_cas is None:
        client.request("POST", location, json=metadata, needs=("create", "update"))
        return

    def send(after_unknown: bool) -> bool:
        try:
            _send_guarded_metadata(client, location, metadata, metadata_cas)
        except MetadataConflict:
            # After an unanswered write, the version that beat this one may be that write.
            if after_unknown and _metadata_landed(client, mount, path, metadata, metadata_cas) is True:
                return True
            raise
        return True

    def landed() -> bool | None:
        return _metadata_landed(client, mount, path, metadata, metadata_cas)

    _write_outcome.sent_once(client, send, landed, proof=f"reading {location} back shows it was not written")


def _send_guarded_metadata(client: VaultClient, location: str, metadata: dict, metadata_cas: int) -> None:
    reply = client.request(
        "POST",
        location,
        json={**metadata, "metadata_cas": metadata_cas},
        kind=WRITE,
        needs=("create", "update"),
        accept=(400,),
    )
    if reply.status == 400:
        errors = "; ".join(str(error) for error in reply.body.get("errors") or [])
        if "check-and-set" in errors or "metadata_cas" in errors:
            raise MetadataConflict(
                f"metadata check-and-set conflict on {location}: another writer changed it since metadata version "
                f"{metadata_cas}"
            )
        raise VaultCertError(f"POST {location} failed with HTTP 400: {errors}")


def _metadata_landed(client: VaultClient, mount: str, path: str, metadata: dict, metadata_cas: int) -> bool | None:
    """After a guarded metadata write's answer was lost: True when it landed, None when it did not."""
    location = metadata_path(mount, path)
    try:
        found = read_metadata(client, mount, path)
    except VaultCertError as exc:
        raise OutcomeUnknown(
            f"the write to {location} was sent but its answer was lost, and reading it back failed: {exc}; "
            "it may or may not have been applied (run again to find out)"
        ) from None
    version = found.current_metadata_version if found else 0
    if version == metadata_cas:
        return None
    wanted = metadata.get("custom_metadata")
    if version == metadata_cas + 1 and (wanted is None or (found and found.custom_metadata or {}) == wanted):
        return True
    raise MetadataConflict(
        f"metadata check-and-set conflict on {location}: another writer changed it since metadata version "
        f"{metadata_cas}"
    )


def delete_versions(
    client: VaultClient, mount: str, path: str, versions: t.Sequence[int], *, created_time: str
) -> None:
    """Soft-delete these versions: their data is kept and can be undeleted.

    Named versions rather than ``DELETE <mount>/data/<path>`` (the latest version): a version
    written since the metadata was read is never deleted by mistake. ``created_time`` is the
    secret's, as read before: after a lost answer, a secret re-created at the path is never written.
    """
    numbers = sorted(versions)
    location = delete_path(mount, path)

    def landed(metadata: SecretMetadata | None) -> bool:
        # Gone altogether (purged meanwhile) counts: the data can no longer be read either.
        if metadata is None:
            return True
        refuse_recreated(metadata, created_time, "POST", location)
        return not any(metadata.readable(number) for number in numbers)

    _send_settled(client, mount, path, "POST", location, {"versions": numbers}, needs=("update",), landed=landed)


def destroy_versions(
    client: VaultClient, mount: str, path: str, versions: t.Sequence[int], *, created_time: str
) -> None:
    """Destroy these versions' data for good; the metadata and the version numbers stay.

    ``created_time`` is the secret's, as read before (see delete_versions).
    """
    numbers = sorted(versions)
    location = destroy_path(mount, path)

    def landed(metadata: SecretMetadata | None) -> bool:
        if metadata is None:
            return True
        refuse_recreated(metadata, created_time, "PUT", location)
        return all(number not in metadata.versions or metadata.versions[number].destroyed for number in numbers)

    _send_settled(client, mount, path, "PUT", location, {"versions": numbers}, needs=("update",), landed=landed)


def refuse_recreated(metadata: SecretMetadata, created_time: str, method: str, location: str) -> None:
    """After a lost answer: OutcomeUnknown when the secret read back is not the one read before.

    Someone purged the secret and created a new one at the path since, whose version numbers may
    equal ours: whether our write reached the old secret first cannot be told, and sending it again
    would land on the new one.
    """
    if metadata.created_time != created_time:
        raise OutcomeUnknown(
            f"{method} {location} was sent but its answer was lost, and the secret was purged and created anew by "
            "someone else since; the new secret was not touched, and whether this write reached the old one first "
            "cannot be told (run again to decide on the secret as it is)"
        )


class SecretRecreated(CasConflict):
    """The secret read back is another one: purged and created anew at the path since ours was read.

    Nothing of ours is on it, and nothing may be written to it, not even to put a setting back.
    """


@dataclass(frozen=True)
class PurgeGuard:
    """The secret as a purge left it after require_check_and_set: what its DELETE may still destroy."""

    current_version: int
    # The metadata version our guarded write made; None on a server without metadata check-and-set.
    metadata_version: int | None
    # cas_required before the purge set it, to put back when the purge stops short.
    cas_required_before: bool
    # The secret's created_time: a secret re-created at the path since is not the one guarded.
    created_time: str = ""

    def holds_on(self, metadata: SecretMetadata) -> bool:
        """Whether ``metadata`` is the guarded secret still under our guard: the same secret (created_time, known),
        cas_required set and, with metadata check-and-set, no metadata write since ours."""
        return (
            bool(self.created_time)
            and metadata.created_time == self.created_time
            and metadata.cas_required
            and (self.metadata_version is None or metadata.current_metadata_version == self.metadata_version)
        )


def require_check_and_set(client: VaultClient, mount: str, path: str, metadata: SecretMetadata) -> PurgeGuard:
    """Set cas_required on the secret, guarded by metadata check-and-set against ``metadata``.

    From then on a data write without check-and-set is refused by the server, so only a writer that
    already knows the current version can still add one before the purge's DELETE. The metadata
    check-and-set refuses the change when anyone wrote the metadata since ``metadata`` was read
    (a data write does not count: OpenBao does not number those). Raises CasConflict then.
    """
    location = metadata_path(mount, path)
    expected = metadata.current_metadata_version
    body: dict[str, t.Any] = {"cas_required": True}
    if expected is not None:
        body["metadata_cas"] = expected
    ours = None if expected is None else expected + 1

    guard = PurgeGuard(metadata.current_version, ours, metadata.cas_required, metadata.created_time)

    def send(after_unknown: bool) -> PurgeGuard:
        # DESTRUCTIVE: a check-and-set write resent blindly after it landed would be refused by its own effect.
        reply = client.request("POST", location, json=body, kind=DESTRUCTIVE, needs=("update",), accept=(400,))
        if reply.status == 400:
            refusal = _metadata_cas_refusal(location, reply.body)
            # After an unanswered attempt, the metadata version that beat this one may be that attempt's.
            if after_unknown and isinstance(refusal, CasConflict) and landed() is not None:
                return guard
            raise refusal
        return guard

    def landed() -> PurgeGuard | None:
        now = _read_back(client, mount, path, "POST", location)
        if now is None:
            raise CasConflict(f"{location} was deleted by someone else while the purge set cas_required on it")
        if now.created_time != metadata.created_time:
            raise SecretRecreated(
                f"{location} was purged and created anew by someone else while the purge set cas_required on it; "
                "nothing destroyed, and the new secret was not touched"
            )
        if ours is None:
            return guard if now.cas_required else None
        if now.current_metadata_version == expected:
            return None
        if now.current_metadata_version == ours and now.cas_required:
            return guard
        raise CasConflict(
            f"the metadata of {location} was changed by another writer since it was read; nothing destroyed"
            + _cas_required_left(mount, path, metadata, now)
        )

    return _write_outcome.sent_once(client, send, landed, proof=f"reading {location} back shows it was not applied")


def _cas_required_left(mount: str, path: str, before: SecretMetadata, now: SecretMetadata) -> str:
    """What a guard write that may have landed before another writer's change leaves: cas_required, if set now.

    It is not put back: the other writer may have set it as well, or want it, and nothing tells whose it is.
    """
    if before.cas_required or not now.cas_required:
        return ""
    return (
        "; cas_required, which the purge's guard write may have set before that change, may still be set on the "
        "secret (writes without check-and-set are refused while it is): if nobody else wants it, clear it with "
        f"'bao kv metadata put -mount={mount} -cas-required=false {path}'"
    )


def _metadata_cas_refusal(location: str, body: dict) -> VaultCertError:
    errors = "; ".join(str(error) for error in body.get("errors") or [])
    if "check-and-set" in errors:
        return CasConflict(
            f"the metadata of {location} was changed by another writer since it was read; nothing destroyed"
        )
    return VaultCertError(f"POST {location} failed with HTTP 400: {errors}")


def release_check_and_set(client: VaultClient, mount: str, path: str, guard: PurgeGuard) -> None:
    """Put cas_required back as it was before require_check_and_set (unless another writer changed the metadata)."""
    if guard.cas_required_before:
        return
    body: dict[str, t.Any] = {"cas_required": False}
    if guard.metadata_version is not None:
        body["metadata_cas"] = guard.metadata_version
    location = metadata_path(mount, path)
    reply = client.request("POST", location, json=body, kind=WRITE, needs=("update",), accept=(400,))
    if reply.status == 400:
        raise _metadata_cas_refusal(location, reply.body)


def purge_metadata(client: VaultClient, mount: str, path: str, guard: PurgeGuard) -> None:
    """Delete the secret's metadata and every version, as guarded by require_check_and_set.

    OpenBao's DELETE on metadata takes no version or check-and-set: it removes whatever is there.
    After a lost answer the metadata is read back (see purge_landed).
    """
    location = metadata_path(mount, path)
    _send_settled(
        client,
        mount,
        path,
        "DELETE",
        location,
        None,
        needs=("delete",),
        landed=lambda metadata: purge_landed(metadata, guard, location),
    )


def purge_landed(metadata: SecretMetadata | None, guard: PurgeGuard, location: str) -> bool:
    """After a purge's DELETE got no answer, from the metadata read back: whether it was applied.

    Gone is done. The guarded secret (same created_time, cas_required set, no metadata write since
    ours) still at the guarded version was not applied: False, sent again. The guarded secret at a
    newer version means another writer added one and the DELETE was not applied (CasConflict, the
    secret kept). Anything else - another writer's metadata change, or a secret re-created at the
    path whose version numbers may equal the guarded ones - is OutcomeUnknown: never sent again.
    """
    if metadata is None:
        return True
    if guard.holds_on(metadata):
        if metadata.current_version == guard.current_version:
            return False
        if metadata.current_version > guard.current_version:
            raise CasConflict(
                f"DELETE {location} was not applied: version {metadata.current_version} was written since "
                f"version {guard.current_version} was read; nothing destroyed, the secret is kept"
            )
    raise OutcomeUnknown(
        f"DELETE {location} was sent but its answer was lost, and the secret was changed (or purged and created "
        "anew) by someone else since; the purge may or may not have been applied before that, and it is not sent "
        "again (run again to decide on the secret as it is)"
    )


def _send_settled(
    client: VaultClient,
    mount: str,
    path: str,
    method: str,
    location: str,
    body: dict | None,
    *,
    needs: t.Sequence[str],
    landed: t.Callable[[SecretMetadata | None], bool],
) -> None:
    """Send a write on a secret's versions or metadata, settled by reading the metadata (see _write_outcome.sent_once).

    ``landed`` says from the metadata read back whether the write took effect.
    """

    def send(_after_unknown: bool) -> bool:
        client.request(method, location, json=body, kind=DESTRUCTIVE, needs=needs)
        return True

    def read_back() -> bool | None:
        return True if landed(_read_back(client, mount, path, method, location)) else None

    _write_outcome.sent_once(
        client, send, read_back, proof=f"reading {metadata_path(mount, path)} back shows it was not applied"
    )


def _read_back(client: VaultClient, mount: str, path: str, method: str, location: str) -> SecretMetadata | None:
    """The secret's metadata after ``method location`` got no answer that proves its outcome."""
    try:
        return read_metadata(client, mount, path)
    except OutcomeUnknown:
        raise
    except VaultCertError as exc:
        raise OutcomeUnknown(
            f"{method} {location} was sent but its answer was lost, and reading the secret back failed: "
            f"{exc}; it may or may not have been applied (run again to find out)"
        ) from None


# Paths per sys/capabilities-self request: OpenBao 2.4.1+ refuses a request body of over 1000 JSON strings
# by default ("refused JSON input due to high complexity").
CAPABILITY_PATHS_PER_REQUEST = 500


def capabilities_self(client: VaultClient, paths: t.Sequence[str]) -> dict[str, list[str]]:
    """The token's capabilities on each path: one request per CAPABILITY_PATHS_PER_REQUEST paths."""
    granted: dict[str, list[str]] = {}
    for start in range(0, len(paths), CAPABILITY_PATHS_PER_REQUEST):
        chunk = list(paths[start : start + CAPABILITY_PATHS_PER_REQUEST])
        reply = client.request("POST", "sys/capabilities-self", json={"paths": chunk}, needs=("update",))
        granted.update({location: list(reply.data.get(location) or []) for location in chunk})
    return granted


def item_option(option: str, index: int, count: int, name: str = "path") -> str:
    """How a message names an item's option: ``path`` for a run of one, ``certificates[3].path`` in a batch."""
    return name if count == 1 else f"{option}[{index}].{name}"
