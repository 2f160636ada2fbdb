# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The remote file options: the reads a list names, and what a host showed, judged by the controller's rules."""

from __future__ import annotations

import base64

import pki
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.certautopilot.vault.plugins.filter.remote_file_reads import remote_file_reads
from ansible_collections.certautopilot.vault.plugins.filter.remote_file_refusals import remote_file_refusals
from ansible_collections.certautopilot.vault.plugins.filter.with_remote_files import with_remote_files

CHAIN = pki.make_chain("host.example.com")
CERT, KEY, INTERMEDIATE = CHAIN.leaf.cert_pem, CHAIN.leaf.key_pem, CHAIN.chain_pem


def realpath(path: str, real: str | None) -> dict:
    """A registered realpath run: resolved to ``real``, or failed (None)."""
    return {"item": path, "rc": 0, "stdout": real} if real else {"item": path, "rc": 1, "stdout": ""}


def stat(path: str, **status) -> dict:
    found = {"exists": True, "isreg": True, "size": 1000, "readable": True, **status}
    return {"item": path, "stat": found}


def slurp(path: str, text: str) -> dict:
    return {"item": path, "content": base64.b64encode(text.encode()).decode(), "encoding": "base64"}


def test_every_file_option_is_a_read_named_by_option_and_item():
    certs = [
        {"certificate_file": "/etc/a/cert.pem", "private_key_file": "/etc/a/key.pem"},
        {"certificate": CERT, "chain_file": ["/etc/a/i1.pem", "/etc/a/i2.pem"]},
    ]
    reads = remote_file_reads(certs)
    assert [(read["name"], read["path"]) for read in reads] == [
        ("cert_distribution_certs[0].certificate_file", "/etc/a/cert.pem"),
        ("cert_distribution_certs[0].private_key_file", "/etc/a/key.pem"),
        ("cert_distribution_certs[1].chain_file[0]", "/etc/a/i1.pem"),
        ("cert_distribution_certs[1].chain_file[1]", "/etc/a/i2.pem"),
    ]


def test_paths_only_need_the_certificate_files():
    certs = [{"certificate_file": "/c.pem", "chain_file": "/i.pem", "private_key_file": "/k.pem"}]
    reads = remote_file_reads(certs, include_chain=False, include_private_key=False)
    assert [read["option"] for read in reads] == ["certificate_file"]


def test_a_relative_path_is_taken_from_the_root_and_refused_without_one():
    certs = [{"certificate_file": "live/cert.pem"}]
    assert remote_file_reads(certs, files_root="/etc/le")[0]["path"] == "/etc/le/live/cert.pem"
    with pytest.raises(AnsibleFilterError, match=r"^cert_distribution_certs\[0\]\.certificate_file: a relative path"):
        remote_file_reads(certs)


@pytest.mark.parametrize("files_root", [None, "/etc/le"])
@pytest.mark.parametrize("pasted", [KEY, "live/cert.pem\nline two"])
def test_a_secret_pasted_as_a_path_is_refused_without_showing_it(pasted, files_root):
    # Under a root too: the reads are a fact the role shows, and their paths go into realpath's argv on the host.
    with pytest.raises(AnsibleFilterError, match=r"^cert_distribution_certs\[0\]\.private_key_file is not a file path"):
        remote_file_reads([{"private_key_file": pasted}], files_root=files_root)


def test_an_item_with_a_file_and_its_inline_option_is_refused():
    with pytest.raises(AnsibleFilterError, match="gives both certificate and certificate_file"):
        remote_file_reads([{"certificate": CERT, "certificate_file": "/c.pem"}])


ROOTED_READS = remote_file_reads(
    [{"certificate_file": "live/cert.pem", "private_key_file": "live/key.pem"}], files_root="/etc/le"
)
ROOT = realpath("/etc/le/.", "/srv/le")


@pytest.mark.parametrize(
    ("key_real", "refusal"),
    [
        ("/srv/le/archive/key1.pem", None),
        ("/srv/other/key.pem", "lies outside cert_distribution_files_root"),
        ("/srv/le-evil/key.pem", "lies outside cert_distribution_files_root"),
        (None, "no such file on the managed host"),
    ],
)
def test_files_must_resolve_inside_the_resolved_root(key_real, refusal):
    reals = [realpath("/etc/le/live/cert.pem", "/srv/le/archive/cert1.pem"), realpath("/etc/le/live/key.pem", key_real)]
    stats = [stat("/srv/le/archive/cert1.pem"), *([stat(key_real)] if key_real else [])]
    found = remote_file_refusals(ROOTED_READS, stats=stats, real_paths=reals, real_root=ROOT)
    if refusal is None:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].startswith("cert_distribution_certs[0].private_key_file: ")
        assert refusal in found[0]
        assert "/srv" not in found[0]


def test_a_root_that_is_no_directory_on_the_host_is_refused():
    found = remote_file_refusals(ROOTED_READS, stats=[], real_paths=[], real_root=realpath("/etc/le/.", None))
    assert found == ["cert_distribution_files_root: not a directory on the managed host; nothing written"]


@pytest.mark.parametrize(
    ("status", "refusal"),
    [
        ({"exists": False}, "no such file"),
        ({"isreg": False}, "not a file"),
        ({"size": 2**20 + 1}, "larger than 1 MiB"),
        ({"readable": False}, "not readable"),
    ],
)
def test_what_is_no_readable_small_regular_file_is_refused_before_it_is_read(status, refusal):
    reads = remote_file_reads([{"certificate_file": "/c.pem"}])
    found = remote_file_refusals(reads, stats=[stat("/c.pem", **status)])
    assert len(found) == 1
    assert found[0].startswith("cert_distribution_certs[0].certificate_file: ")
    assert refusal in found[0]


def test_a_file_option_must_hold_what_it_names_and_nothing_of_it_is_shown():
    reads = remote_file_reads([{"certificate_file": "/c.pem", "private_key_file": "/k.pem", "chain_file": "/i.pem"}])
    slurps = [slurp("/c.pem", CERT + KEY), slurp("/i.pem", "password=hunter2\n"), slurp("/k.pem", CERT)]
    found = remote_file_refusals(reads, slurps=slurps)
    assert [message.split(": ", 1)[0] for message in found] == [
        "cert_distribution_certs[0].certificate_file",
        "cert_distribution_certs[0].chain_file",
        "cert_distribution_certs[0].private_key_file",
    ]
    assert "hunter2" not in " ".join(found)
    assert "MII" not in " ".join(found)


def test_the_files_text_replaces_each_file_option_with_only_what_it_names():
    certs = [
        {"certificate_file": "/c.pem", "private_key_file": "/k.pem", "chain_file": ["/i.pem"], "path": "certs/a"},
    ]
    reads = remote_file_reads(certs)
    # Text around the blocks, and the certificate beside the key in a combined file, are left behind.
    slurps = [slurp("/c.pem", "# leaf\n" + CERT), slurp("/k.pem", CERT + KEY), slurp("/i.pem", INTERMEDIATE)]
    assert remote_file_refusals(reads, slurps=slurps) == []
    [item] = with_remote_files(certs, reads=reads, slurps=slurps)
    assert item == {"certificate": CERT, "private_key": KEY, "chain": [INTERMEDIATE], "path": "certs/a"}
    assert certs[0]["certificate_file"] == "/c.pem"


def test_options_not_read_are_left_out_of_the_items():
    certs = [{"certificate_file": "/c.pem", "private_key_file": "/k.pem", "chain_file": "/i.pem"}]
    reads = remote_file_reads(certs, include_chain=False, include_private_key=False)
    [item] = with_remote_files(
        certs, reads=reads, slurps=[slurp("/c.pem", CERT)], include_chain=False, include_private_key=False
    )
    assert item == {"certificate": CERT}


def test_a_file_read_once_under_a_root_serves_every_item_that_names_it():
    certs = [
        {"certificate_file": "a.pem", "chain_file": "chain.pem"},
        {"certificate_file": "b.pem", "chain_file": "chain.pem"},
    ]
    reads = remote_file_reads(certs, files_root="/r", include_private_key=False)
    other = pki.make_chain("other.example.com").leaf.cert_pem
    reals = [realpath(f"/r/{name}", f"/r/{name}") for name in ("a.pem", "chain.pem", "b.pem")]
    slurps = [slurp("/r/a.pem", CERT), slurp("/r/chain.pem", INTERMEDIATE), slurp("/r/b.pem", other)]
    items = with_remote_files(certs, reads=reads, slurps=slurps, real_paths=reals, include_private_key=False)
    assert items == [{"certificate": CERT, "chain": INTERMEDIATE}, {"certificate": other, "chain": INTERMEDIATE}]
