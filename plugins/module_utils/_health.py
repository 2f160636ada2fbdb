# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only checks of a server and of what a push or rollback will need.

Private to the collection.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from ansible_collections.certautopilot.vault.plugins.module_utils import _kv2
from ansible_collections.certautopilot.vault.plugins.module_utils._client import VaultClient
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

# sys/health answers these codes for an unsealed active, a standby, a DR or
# performance secondary, an uninitialized and a sealed node.
HEALTH_STATUS = (200, 429, 472, 473, 501, 503)
PUSH_CAPABILITIES = ("read", "create", "update")
ROLLBACK_DATA_CAPABILITIES = ("read", "update")
ROLLBACK_METADATA_CAPABILITIES = ("read",)


@dataclass(frozen=True)
class HealthRequest:
    mount: str | None = None
    path: str | None = None
    check_rollback: bool = False
    min_versions: int | None = None
    standby_ok: bool = True
    authenticated: bool = False


@dataclass
class HealthReport:
    result: dict = field(default_factory=lambda: {"changed": False, "checks": []})

    def record(self, name: str, ok: bool, msg: str) -> bool:
        self.result["checks"].append({"name": name, "ok": ok, "msg": msg})
        return ok

    def failures(self) -> list[str]:
        return [check["msg"] for check in self.result["checks"] if not check["ok"]]


def server_status(client: VaultClient, report: HealthReport, *, standby_ok: bool) -> bool:
    # sys/health lives in the root namespace only; a namespace header makes it fail. Its status
    # codes describe the node (429 standby, 503 sealed, ...): every one is read, none retried.
    reply = client.request("GET", "sys/health", accept=HEALTH_STATUS, namespace=None)
    body = reply.body
    report.result.update(
        initialized=bool(body.get("initialized")),
        sealed=bool(body.get("sealed")),
        standby=bool(body.get("standby")),
        server_version=body.get("version"),
        cluster_name=body.get("cluster_name"),
    )
    return report.record("server", *server_verdict(body, url=client.settings.url, standby_ok=standby_ok))


def server_verdict(body: t.Mapping[str, t.Any], *, url: str, standby_ok: bool) -> tuple[bool, str]:
    """What a sys/health answer says about the server: usable or not, and why."""
    if not body.get("initialized"):
        return False, f"{url} is not initialized"
    if body.get("sealed"):
        return False, f"{url} is sealed"
    if body.get("standby") and not standby_ok:
        return False, f"{url} is a standby node and standby_ok is false"
    role = "standby" if body.get("standby") else "active"
    return True, f"{url} is initialized, unsealed and {role} (version {body.get('version')})"


def _missing(capabilities: t.Sequence[str], needed: t.Sequence[str]) -> list[str]:
    """The needed capabilities missing from a capability list."""
    if "root" in capabilities:
        return []
    return [capability for capability in needed if capability not in capabilities]


def check_capabilities(client: VaultClient, report: HealthReport, request: HealthRequest) -> None:
    data_location = _kv2.data_path(request.mount, request.path)
    metadata_location = _kv2.metadata_path(request.mount, request.path)
    granted = _kv2.capabilities_self(client, [data_location, metadata_location])
    report.result["capabilities"] = sorted(granted[data_location])
    _record_capabilities(report, "push_capabilities", data_location, granted[data_location], PUSH_CAPABILITIES)
    if request.check_rollback:
        _record_capabilities(
            report, "rollback_capabilities", data_location, granted[data_location], ROLLBACK_DATA_CAPABILITIES
        )
        _record_capabilities(
            report, "rollback_metadata", metadata_location, granted[metadata_location], ROLLBACK_METADATA_CAPABILITIES
        )


def _record_capabilities(report, name, location, granted, needed) -> None:
    missing = _missing(granted, needed)
    if missing:
        report.record(name, False, _denied(location, granted, needed, missing))
    else:
        report.record(name, True, f"the token has {', '.join(needed)} on {location}")


def _denied(location: str, granted: t.Sequence[str], needed: t.Sequence[str], missing: t.Sequence[str]) -> str:
    return (
        f"permission denied on {location}: the token needs {', '.join(needed)} and lacks {', '.join(missing)} "
        f"(it has: {', '.join(granted) or 'none'})"
    )


def require_capabilities(client: VaultClient, needs: t.Mapping[str, t.Sequence[str]]) -> None:
    """Refuse, before any write, when the token lacks what an operation needs on any of these API paths.

    One ``sys/capabilities-self`` request per 500 paths, in the run's own login: what the health
    check would find, without a second module run.
    """
    granted = _kv2.capabilities_self(client, list(needs))
    for location, needed in needs.items():
        missing = _missing(granted[location], needed)
        if missing:
            raise VaultCertError(f"{_denied(location, granted[location], needed, missing)}; nothing written")


def check_max_versions(client: VaultClient, report: HealthReport, request: HealthRequest) -> None:
    effective = _effective_max_versions(client, request)
    if effective is not None:
        report.result["max_versions"] = effective
    if request.min_versions is not None:
        report.record("max_versions", *max_versions_verdict(effective, request.min_versions, mount=request.mount))


def max_versions_verdict(effective: int | None, min_versions: int, *, mount: str) -> tuple[bool, str]:
    """Whether the versions KV v2 keeps (``effective``, None when unknown) reach ``min_versions`` back."""
    if effective is None:
        return False, (
            f"max_versions of {mount} is unknown: the token may read neither the secret's metadata "
            f"nor {mount}/config, so min_versions {min_versions} cannot be confirmed"
        )
    if effective < min_versions:
        return False, (
            f"max_versions is {effective}, fewer than min_versions {min_versions}: "
            "rollback could not reach that far back"
        )
    return True, f"max_versions {effective} keeps at least {min_versions} versions"


def _effective_max_versions(client: VaultClient, request: HealthRequest) -> int | None:
    secret_setting = 0
    if request.path:
        try:
            metadata = _kv2.read_metadata(client, request.mount, request.path)
        except VaultCertError:
            metadata = None
        secret_setting = metadata.max_versions if metadata else 0
    if secret_setting:
        return secret_setting
    mount_setting = _kv2.read_mount_max_versions(client, request.mount)
    if mount_setting is None:
        return None
    return mount_setting or _kv2.DEFAULT_MAX_VERSIONS


def run_checks(client: VaultClient, request: HealthRequest, log_in: t.Callable[[VaultClient], None]) -> dict:
    """Every check that applies, in order; raises VaultCertError naming the failed ones, with the result."""
    report = HealthReport()
    if server_status(client, report, standby_ok=request.standby_ok) and request.authenticated:
        _authenticated_checks(client, report, request, log_in)
    failures = report.failures()
    if failures:
        raise VaultCertError("health check failed: " + "; ".join(failures), result=report.result)
    return report.result


def _authenticated_checks(client, report: HealthReport, request: HealthRequest, log_in) -> None:
    """Login, mount, capabilities, max_versions; an error stops the checks and is recorded under its step."""
    step = "login"
    try:
        log_in(client)
        report.record(step, True, "logged in")
        if not request.mount:
            return
        step = "mount"
        _kv2.check_mount(client, request.mount)
        report.result["kv_version"] = 2
        report.record(step, True, f"{request.mount} is a KV v2 mount")
        step = "capabilities"
        if request.path:
            check_capabilities(client, report, request)
        step = "max_versions"
        check_max_versions(client, report, request)
    except VaultCertError as exc:
        report.record(step, False, str(exc))
