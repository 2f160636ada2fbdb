# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""read_text and read_option_file: a controller file's text, read once, through a real DataLoader when vaulted."""

from __future__ import annotations

import os
import threading
import tracemalloc

import pki
import pytest
import vault_files
from ansible.parsing.dataloader import DataLoader

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.plugin_utils import _files
from ansible_collections.certautopilot.vault.plugins.plugin_utils._files import (
    CERTIFICATES,
    PRIVATE_KEY,
    read_option_file,
    read_text,
)

SECRET = "-----BEGIN PRIVATE KEY-----\nTOP-SECRET-KEY-MATERIAL\n-----END PRIVATE KEY-----\n"
CANNOT_DECRYPT = "it cannot be decrypted (is the Ansible Vault password given, and the right one?)"


class RecordingLoader(DataLoader):
    """A real DataLoader that also remembers the real files it handed out and the ones it was asked to clean up."""

    def __init__(self) -> None:
        super().__init__()
        self.handed_out: list[str] = []
        self.cleaned: list[str] = []

    def get_real_file(self, file_path: str, decrypt: bool = True) -> str:
        real = super().get_real_file(file_path, decrypt=decrypt)
        self.handed_out.append(real)
        return real

    def cleanup_tmp_file(self, file_path: str) -> None:
        self.cleaned.append(file_path)
        super().cleanup_tmp_file(file_path)


@pytest.fixture
def loader() -> RecordingLoader:
    loader = RecordingLoader()
    loader.set_vault_secrets(vault_files.secrets())
    yield loader
    loader.cleanup_all_tmp_files()


def test_a_plain_file_is_read_as_text_and_left_in_place(loader, tmp_path):
    key = tmp_path / "key.pem"
    key.write_text(SECRET)
    assert read_text(loader, str(key), what="private_key_file") == SECRET
    assert loader.handed_out == []  # read from the one descriptor: the loader never opens it by name again
    assert key.read_text() == SECRET


def test_a_vault_encrypted_file_is_decrypted(loader, tmp_path):
    key = vault_files.write(tmp_path / "key.vault", SECRET)
    assert SECRET.encode() not in key.read_bytes()
    assert read_text(loader, str(key), what="private_key_file") == SECRET


def test_the_decrypted_copy_is_cleaned_up(loader, tmp_path):
    key = vault_files.write(tmp_path / "key.vault", SECRET)
    read_text(loader, str(key), what="private_key_file")
    [decrypted] = loader.handed_out
    assert decrypted != str(key)
    assert loader.cleaned == [decrypted]
    assert not os.path.exists(decrypted)
    assert key.exists()


def test_the_decrypted_copy_is_cleaned_up_when_it_is_not_text(loader, tmp_path):
    key = tmp_path / "key.vault"
    vault_files.write(key, b"\xff\xfe\x00binary")
    with pytest.raises(VaultCertError, match="not UTF-8"):
        read_text(loader, str(key), what="private_key_file")
    [decrypted] = loader.handed_out
    assert loader.cleaned == [decrypted]
    assert not os.path.exists(decrypted)


def test_a_file_that_is_not_utf8_is_refused_naming_its_option(loader, tmp_path):
    key = tmp_path / "key.der"
    key.write_bytes(b"\x30\x82\xff\xfe TOP-SECRET-KEY-MATERIAL")
    with pytest.raises(VaultCertError) as raised:
        read_text(loader, str(key), what="private_key_file")
    assert str(raised.value) == "cannot read private_key_file: it is not UTF-8 text"


def test_a_missing_file_is_refused_by_its_option_with_the_system_reason_never_its_path(loader, tmp_path):
    missing = tmp_path / "missing.pem"
    with pytest.raises(VaultCertError) as raised:
        read_text(loader, str(missing), what="certificate_file")
    assert str(raised.value) == "cannot read certificate_file: no such file"


@pytest.mark.parametrize(
    ("password", "content"),
    [
        (b"another-password", None),  # a vault file this password does not open
        (vault_files.PASSWORD, "$ANSIBLE_VAULT;1.1;AES256\nTOP-SECRET-KEY-MATERIAL\n"),  # a broken vault file
    ],
    ids=["wrong-password", "broken-vault-file"],
)
def test_a_vault_file_that_does_not_open_is_named_without_its_contents(loader, tmp_path, password, content):
    key = tmp_path / "key.vault"
    if content is None:
        vault_files.write(key, SECRET, password=password)
    else:
        key.write_text(content)
    with pytest.raises(VaultCertError) as raised:
        read_text(loader, str(key), what="private_key_file")
    message = str(raised.value)
    assert message == f"cannot read private_key_file: {CANNOT_DECRYPT}"
    assert "TOP-SECRET-KEY-MATERIAL" not in message
    for line in key.read_text().splitlines()[1:]:  # the ciphertext lines
        assert line not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_vault_file_without_any_vault_password_is_refused(tmp_path):
    key = vault_files.write(tmp_path / "key.vault", SECRET)
    with pytest.raises(VaultCertError) as raised:
        read_text(DataLoader(), str(key), what="private_key_file")
    assert str(raised.value) == f"cannot read private_key_file: {CANNOT_DECRYPT}"


def test_a_directory_is_refused_as_not_a_file(loader, tmp_path):
    with pytest.raises(VaultCertError) as raised:
        read_text(loader, str(tmp_path), what="chain_file")
    assert str(raised.value) == "cannot read chain_file: not a file"


class FailingLoader(DataLoader):
    """A loader whose own error quotes what it read, as some do."""

    def get_real_file(self, file_path: str, decrypt: bool = True) -> str:
        raise RuntimeError(f"cannot parse {SECRET}")


def test_a_loader_error_is_named_by_its_kind_not_its_text(tmp_path):
    key = vault_files.write(tmp_path / "key.vault", SECRET)
    with pytest.raises(VaultCertError) as raised:
        read_text(FailingLoader(), str(key), what="private_key_file")
    assert str(raised.value) == "cannot read private_key_file: the loader refused it (RuntimeError)"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


# --- a path is never quoted, whatever it holds -----------------------------------------------


@pytest.mark.parametrize(
    "path",
    [SECRET, "hvs.CAESIJ" + "q" * 40, "/etc/pki/" + "x" * 300],
    ids=["pem-key", "vault-token", "over-256-characters"],
)
def test_a_missing_path_is_not_quoted_whatever_it_holds(loader, path):
    with pytest.raises(VaultCertError) as raised:
        read_text(loader, path, what="private_key_file")
    assert str(raised.value) == "cannot read private_key_file: no such file"


def test_a_directory_is_not_quoted_whatever_its_name(loader, tmp_path):
    directory = tmp_path / ("hvs.CAESIJ" + "q" * 40)
    directory.mkdir()
    with pytest.raises(VaultCertError) as raised:
        read_text(loader, str(directory), what="private_key_file")
    assert str(raised.value) == "cannot read private_key_file: not a file"


@pytest.mark.parametrize("content", [b"\xff\xfe\x00", None], ids=["not-utf8", "wrong-vault-password"])
def test_a_file_whose_name_looks_like_a_token_is_not_quoted_when_it_cannot_be_read(loader, tmp_path, content):
    token = "hvs.CAESIJ" + "q" * 40
    named = tmp_path / token
    if content is None:
        vault_files.write(named, SECRET, password=b"another-password")
    else:
        named.write_bytes(content)
    with pytest.raises(VaultCertError) as raised:
        read_text(loader, str(named), what="private_key_file")
    assert token not in str(raised.value)


# -- read_option_file: a file option gives only what it names, below files_root -----------------------------


@pytest.fixture(scope="module")
def issued():
    return pki.make_chain("files.example.com")


def test_a_certificate_file_gives_its_certificates_and_nothing_around_them(loader, tmp_path, issued):
    mixed = tmp_path / "bundle.pem"
    mixed.write_text(f"subject=CN=x\nsecret=hunter2\n{issued.leaf.cert_pem}\nnote\n{issued.intermediate.cert_pem}")
    text = read_option_file(loader, str(mixed), option="chain_file", kind=CERTIFICATES)
    assert text == issued.leaf.cert_pem.strip() + "\n" + issued.intermediate.cert_pem.strip() + "\n"


@pytest.mark.parametrize("content", ["db_password=hunter2\n", "", "KEY", "CERT+KEY", "TRUNCATED"])
def test_a_certificate_option_refuses_a_file_of_anything_else_without_showing_it(loader, tmp_path, issued, content):
    text = {
        "KEY": issued.leaf.key_pem,
        "CERT+KEY": issued.leaf.cert_pem + issued.leaf.key_pem,
        "TRUNCATED": issued.leaf.cert_pem[:200],
    }.get(content, content)
    path = tmp_path / "app.conf"
    path.write_text(text)
    with pytest.raises(VaultCertError) as caught:
        read_option_file(loader, str(path), option="certificates[2].chain_file", kind=CERTIFICATES)
    message = str(caught.value)
    assert message.startswith("certificates[2].chain_file: the file is not a PEM certificate file")
    assert "hunter2" not in message and "PRIVATE" not in message and "app.conf" not in message


def test_a_key_option_gives_the_one_key_of_a_combined_file(loader, tmp_path, issued):
    combined = tmp_path / "combined.pem"
    combined.write_text(f"{issued.leaf.cert_pem}comment\n{issued.leaf.key_pem}")
    assert read_option_file(loader, str(combined), option="private_key_file", kind=PRIVATE_KEY) == issued.leaf.key_pem


@pytest.mark.parametrize("content", ["CERT", "TWO_KEYS", "user:password\n"])
def test_a_key_option_refuses_a_file_without_exactly_one_key(loader, tmp_path, issued, content):
    text = {
        "CERT": issued.leaf.cert_pem,
        "TWO_KEYS": issued.leaf.key_pem + issued.intermediate.key_pem,
    }.get(content, content)
    path = tmp_path / "f"
    path.write_text(text)
    with pytest.raises(VaultCertError, match=r"^private_key_file: the file does not hold exactly one PEM private key"):
        read_option_file(loader, str(path), option="private_key_file", kind=PRIVATE_KEY)


@pytest.mark.parametrize("escape", ["symlink", "dotdot", "absolute", "symlinked-directory"])
def test_files_root_refuses_what_resolves_outside_it(loader, tmp_path, issued, escape):
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (outside / "key.pem").write_text(issued.leaf.key_pem)
    (root / "link.pem").symlink_to(outside / "key.pem")
    (root / "dir").symlink_to(outside)
    path = {
        "symlink": "link.pem",
        "dotdot": "../elsewhere/key.pem",
        "absolute": str(outside / "key.pem"),
        "symlinked-directory": str(root / "dir" / "key.pem"),
    }[escape]
    with pytest.raises(VaultCertError) as caught:
        read_option_file(loader, path, option="private_key_file", kind=PRIVATE_KEY, root=str(root))
    assert str(caught.value) == (
        "private_key_file: the file lies outside files_root (symlinks and '..' resolved); nothing written"
    )
    assert loader.handed_out == []


def test_files_root_reads_a_file_inside_it_by_a_relative_path_or_an_inner_link(loader, tmp_path, issued):
    root = tmp_path / "root"
    (root / "keys").mkdir(parents=True)
    (root / "keys" / "key.pem").write_text(issued.leaf.key_pem)
    (root / "current.pem").symlink_to(root / "keys" / "key.pem")
    for path in ("keys/key.pem", "current.pem", "keys/../keys/key.pem", str(root / "keys" / "key.pem")):
        assert read_option_file(loader, path, option="private_key_file", kind=PRIVATE_KEY, root=str(root)) == (
            issued.leaf.key_pem
        )


def test_a_files_root_that_is_no_directory_is_refused(loader, tmp_path, issued):
    with pytest.raises(VaultCertError, match=r"^private_key_file: files_root is not a directory"):
        read_option_file(loader, "key.pem", option="private_key_file", kind=PRIVATE_KEY, root=str(tmp_path / "none"))


# -- one open: a name swapped after the check is refused, never followed or waited on ---------------------------


@pytest.fixture
def upload_root(tmp_path):
    """files_root with a folder others may write to, and a private folder beside it."""
    root, outside = tmp_path / "root", tmp_path / "private"
    (root / "upload").mkdir(parents=True)
    outside.mkdir()
    return root, outside


def swapped_after_the_check(monkeypatch, swap) -> None:
    """``swap`` runs once the path has been resolved and judged, before the file is opened: the window a second
    user who may write below files_root wins by retrying."""
    check = _files.confined

    def checked_then_swapped(*args, **kwargs):
        real = check(*args, **kwargs)
        swap()
        return real

    monkeypatch.setattr(_files, "confined", checked_then_swapped)


def replaced_by_symlink(path, target) -> None:
    link = path.with_name(path.name + ".swap")
    link.symlink_to(target)
    os.replace(link, path)


def test_a_file_swapped_for_a_symlink_after_the_check_is_refused(loader, monkeypatch, upload_root, issued):
    root, outside = upload_root
    victim = pki.make_leaf(None, "victim.example.com")
    (root / "upload" / "key.pem").write_text(issued.leaf.key_pem)
    (outside / "victim.key").write_text(victim.key_pem)
    swapped_after_the_check(
        monkeypatch, lambda: replaced_by_symlink(root / "upload" / "key.pem", outside / "victim.key")
    )

    with pytest.raises(VaultCertError) as caught:
        read_option_file(
            loader, "upload/key.pem", option="certificates[0].private_key_file", kind=PRIVATE_KEY, root=str(root)
        )
    assert str(caught.value) == (
        "cannot read certificates[0].private_key_file: a symbolic link took its place after its path was resolved"
    )


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="the kernel names an open file through /proc")
def test_a_folder_swapped_for_a_symlink_after_the_check_is_refused_where_the_file_was_opened(
    loader, monkeypatch, upload_root, issued
):
    root, outside = upload_root
    (root / "upload" / "key.pem").write_text(issued.leaf.key_pem)
    (outside / "key.pem").write_text(pki.make_leaf(None, "victim.example.com").key_pem)

    def swap() -> None:
        os.rename(root / "upload", root / "old-upload")
        (root / "upload").symlink_to(outside)

    swapped_after_the_check(monkeypatch, swap)
    with pytest.raises(VaultCertError) as caught:
        read_option_file(
            loader, "upload/key.pem", option="certificates[0].private_key_file", kind=PRIVATE_KEY, root=str(root)
        )
    assert str(caught.value) == (
        "certificates[0].private_key_file: the file lies outside files_root (symlinks and '..' resolved); "
        "nothing written"
    )


class LoaderSwappingAfterItsLook(RecordingLoader):
    """A real DataLoader, with ``swap`` run once it has looked at a file - before the file's text is read."""

    def __init__(self, swap) -> None:
        super().__init__()
        self._swap = swap

    def get_real_file(self, file_path: str, decrypt: bool = True) -> str:
        real = super().get_real_file(file_path, decrypt=decrypt)
        self._swap()
        return real


@pytest.mark.parametrize("window", ["after-the-path-is-resolved", "after-the-loader-looked"])
def test_a_file_swapped_for_a_fifo_is_never_waited_on(loader, monkeypatch, upload_root, issued, window):
    root, _outside = upload_root
    chain = root / "upload" / "chain.pem"
    chain.write_text(issued.leaf.cert_pem)
    fifo = root / "upload" / "fifo"
    os.mkfifo(fifo)

    def swap() -> None:
        if fifo.exists():
            os.replace(fifo, chain)

    if window == "after-the-path-is-resolved":
        swapped_after_the_check(monkeypatch, swap)
    else:
        loader = LoaderSwappingAfterItsLook(swap)
    outcome: list = []

    def read() -> None:
        try:
            outcome.append(
                read_option_file(
                    loader, "upload/chain.pem", option="certificates[0].chain_file", kind=CERTIFICATES, root=str(root)
                )
            )
        except VaultCertError as exc:
            outcome.append(str(exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # release a blocked open() so that the thread ends
        os.close(os.open(chain, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
        pytest.fail("reading a file option waited on a FIFO swapped in after the check")
    # Refused when the FIFO came before the one open; a plain file is never handed to the loader, so its look
    # is no window at all.
    assert (
        outcome
        == {
            "after-the-path-is-resolved": ["cannot read certificates[0].chain_file: not a file"],
            "after-the-loader-looked": [issued.leaf.cert_pem],
        }[window]
    )


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(loader, tmp_path):
    big = tmp_path / "big.pem"
    with open(big, "wb") as handle:
        handle.truncate(96 * 2**20)  # sparse: costs no disk
    tracemalloc.start()
    try:
        with pytest.raises(VaultCertError) as caught:
            read_option_file(
                loader, "big.pem", option="certificates[0].chain_file", kind=CERTIFICATES, root=str(tmp_path)
            )
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(caught.value) == f"cannot read certificates[0].chain_file: {_files.TOO_LARGE}"
    assert peak < 4 * 2**20


def test_a_file_at_the_size_cap_is_read(loader, tmp_path, issued):
    chain = tmp_path / "chain.pem"
    padding = "\n" * (_files.MAX_FILE_BYTES - len(issued.leaf.cert_pem.encode()))
    chain.write_text(issued.leaf.cert_pem + padding)
    assert chain.stat().st_size == _files.MAX_FILE_BYTES
    assert read_option_file(loader, str(chain), option="chain_file", kind=CERTIFICATES) == issued.leaf.cert_pem
