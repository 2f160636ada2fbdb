# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The version settings of a secret's metadata a push may set (max_versions, delete_version_after, cas_required),
and the durations Vault writes them in. Private to the collection."""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

if t.TYPE_CHECKING:
    from ansible_collections.certautopilot.vault.plugins.module_utils._kv2 import SecretMetadata

# A Go duration as Vault prints and takes it ("720h0m0s", "1h30m", "90s"), plus Vault's "d" for days.
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h|d)")
# Go's longest duration, about 292 years: the server refuses more.
MAX_DURATION_SECONDS = (2**63 - 1) // 10**9
_DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(value: t.Any, *, option: str) -> int:
    """Whole seconds of a duration given as a number of seconds or as a Go duration ("30d", "720h", "1h30m")."""
    text = str(value).strip() if isinstance(value, str) else ""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        total = float(value)
    elif text.isascii() and text.isdigit():
        total = float(text)
    elif text and not _DURATION_PART.sub("", text):
        total = sum(float(number) * _DURATION_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))
    else:
        raise VaultCertError(f"{option} must be a number of seconds or a duration such as 30d, 720h or 1h30m")
    if total > MAX_DURATION_SECONDS:
        raise VaultCertError(f"{option} must be at most {MAX_DURATION_SECONDS} seconds (about 292 years)")
    if 0 < total < 1:
        # Whole seconds are what the server keeps; rounding down to 0 would mean "never".
        raise VaultCertError(f"{option} must be 0 (never) or at least one second")
    return int(total)


@dataclass(frozen=True)
class VersionPolicy:
    """The version settings of a secret's metadata a push may set; None leaves a setting as the secret has it."""

    max_versions: int | None = None
    delete_version_after: int | None = None
    cas_required: bool | None = None

    @classmethod
    def from_options(
        cls, *, max_versions: int | None, delete_version_after: t.Any, cas_required: bool | None
    ) -> VersionPolicy:
        if isinstance(max_versions, bool):
            # JSON true is 1 to the server: one version kept, every other one gone.
            raise VaultCertError(f"max_versions must be a number of versions, got {max_versions}")
        if max_versions is not None and max_versions < 0:
            raise VaultCertError(f"max_versions must be 0 (the mount's setting) or more, got {max_versions}")
        after = None
        if delete_version_after is not None:
            after = duration_seconds(delete_version_after, option="delete_version_after")
        return cls(max_versions=max_versions, delete_version_after=after, cas_required=cas_required)

    @property
    def given(self) -> bool:
        return any(value is not None for value in (self.max_versions, self.delete_version_after, self.cas_required))

    def differences(self, metadata: SecretMetadata | None) -> dict[str, t.Any]:
        """The given settings ``metadata`` does not have yet (all of them for a new secret), as the API takes them."""
        wanted = self._as_body(self.max_versions, self.delete_version_after, self.cas_required)
        if metadata is None:
            return wanted
        current = self.current_values(metadata)
        return {name: value for name, value in wanted.items() if current[name] != value}

    @classmethod
    def current_values(cls, metadata: SecretMetadata) -> dict[str, t.Any]:
        return cls._as_body(metadata.max_versions, metadata.delete_version_after, metadata.cas_required)

    @staticmethod
    def _as_body(max_versions: int | None, delete_version_after: int | None, cas_required: bool | None) -> dict:
        body = {
            "max_versions": max_versions,
            "delete_version_after": None if delete_version_after is None else f"{delete_version_after}s",
            "cas_required": cas_required,
        }
        return {name: value for name, value in body.items() if value is not None}
