"""Ansible Vault encrypted files for unit tests of the controller side (the lookup, the file reader).

Plain Python, no pytest: one test password, the secrets a DataLoader is given for it, and text encrypted
with it (or with another password, for a file the loader cannot open).
"""

from __future__ import annotations

import pathlib

from ansible.parsing.vault import VaultLib, VaultSecret

PASSWORD = b"unit-test-vault-password"


def secrets(password: bytes = PASSWORD) -> list[tuple[str, VaultSecret]]:
    """What ``DataLoader.set_vault_secrets`` takes to open files encrypted with ``password``."""
    return [("default", VaultSecret(password))]


def encrypt(text: str | bytes, password: bytes = PASSWORD) -> bytes:
    return VaultLib(secrets(password)).encrypt(text)


def write(path: pathlib.Path, text: str | bytes, password: bytes = PASSWORD) -> pathlib.Path:
    """``path`` holding ``text`` encrypted with ``password``."""
    path.write_bytes(encrypt(text, password))
    return path
