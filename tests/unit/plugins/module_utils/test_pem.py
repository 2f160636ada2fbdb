# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding PEM blocks and private keys in text: the pure scanner of _pem."""

from __future__ import annotations

from ansible_collections.certautopilot.vault.plugins.module_utils._pem import (
    normalise_pem,
    private_key_blocks,
    scan,
)

# --- normalise_pem ---------------------------------------------------------------------------


def test_normalise_converts_crlf_and_cr_to_lf():
    assert normalise_pem("a\r\nb\rc\n") == "a\nb\nc\n"


def test_normalise_strips_surrounding_whitespace_and_ends_with_one_newline():
    assert normalise_pem("\n\n  a\nb  \n\n\n") == "a\nb\n"
    assert normalise_pem("a\nb") == "a\nb\n"


def test_normalise_of_empty_text_is_empty():
    assert normalise_pem("") == ""
    assert normalise_pem(" \r\n\t") == ""


def test_scan_pairs_markers_and_keeps_truncated_and_orphan_blocks():
    text = "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nBB"
    blocks = scan(text)
    assert [(block.label, block.complete, block.private) for block in blocks] == [
        ("CERTIFICATE", True, False),
        ("PRIVATE KEY", False, True),
    ]
    assert blocks[1].end == len(text)


def test_private_key_blocks_finds_every_key_label(ec_chain, rsa_chain):
    text = f"x {ec_chain.leaf.key_pem} y {ec_chain.leaf.cert_pem} z -----BEGIN RSA PRIVATE KEY-----\nCC"
    assert private_key_blocks(text) == [ec_chain.leaf.key_pem.strip(), "-----BEGIN RSA PRIVATE KEY-----\nCC"]
