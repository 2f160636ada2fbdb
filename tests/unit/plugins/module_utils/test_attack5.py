# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attacks on _layouts' PKCS#12 comparison: what a current bundle planted in the secret can make the push do.

A test named for a defect fails on the code it was written against and states the safe behaviour.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap

import pki
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ansible_collections.certautopilot.vault.plugins.module_utils import _layouts

PASSWORD = "unit-attack5-pkcs12-password"
# The MAC iteration count OpenSSL reads as an int: the most a bundle can ask for.
MAX_ITERATIONS = 2**31 - 1
# A comparison that takes longer than this is a hang a planted value can cause on every run.
DEADLINE = 15


def _desired(chain: pki.Chain) -> str:
    encryption = _layouts._pkcs12_encryption(PASSWORD)
    data = pkcs12.serialize_key_and_certificates(
        None, chain.leaf.key, chain.leaf.cert, [chain.intermediate.cert], encryption
    )
    return base64.b64encode(data).decode("ascii")


def _with_mac_iterations(value: str, iterations: int) -> str:
    """The bundle with its MacData iteration count replaced (the MAC itself is left, so it no longer verifies).

    Written by the collection, the bundle ends with MacData ``30 41 ... 02 02 08 00`` (2048 iterations) inside
    the PFX ``30 82 <len>``: the INTEGER is swapped and both lengths adjusted.
    """
    data = base64.b64decode(value)
    tail = bytes.fromhex("02020800")
    assert data.endswith(tail) and data[:2] == b"\x30\x82"
    number = iterations.to_bytes((iterations.bit_length() + 8) // 8, "big")
    integer = bytes([0x02, len(number)]) + number
    grown = len(integer) - len(tail)
    start = data.rfind(b"\x30\x41\x30\x31")
    assert start > 0
    body = data[:start] + bytes([0x30, 0x41 + grown]) + data[start + 2 : -len(tail)] + integer
    length = int.from_bytes(body[2:4], "big") + grown
    return base64.b64encode(body[:2] + length.to_bytes(2, "big") + body[4:]).decode("ascii")


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _data(inner: bytes) -> bytes:
    # ContentInfo { id-data, [0] EXPLICIT OCTET STRING }
    return _der(0x30, bytes.fromhex("06092a864886f70d010701") + _der(0xA0, _der(0x04, inner)))


def _plain_pkcs12(chain: pki.Chain) -> str:
    """A PKCS#12 without MAC and without encryption (openssl -nomac -keypbe NONE -certpbe NONE)."""
    pkcs8 = chain.leaf.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    bags = [_der(0x30, bytes.fromhex("060b2a864886f70d010c0a0101") + _der(0xA0, pkcs8))]
    for cert in (chain.leaf.cert, chain.intermediate.cert):
        value = _der(
            0x30,
            bytes.fromhex("060a2a864886f70d01091601")
            + _der(0xA0, _der(0x04, cert.public_bytes(serialization.Encoding.DER))),
        )
        bags.append(_der(0x30, bytes.fromhex("060b2a864886f70d010c0a0103") + _der(0xA0, value)))
    pfx = _der(0x30, _der(0x02, b"\x03") + _data(_der(0x30, _data(_der(0x30, b"".join(bags))))))
    return base64.b64encode(pfx).decode("ascii")


def test_a_bundle_with_a_huge_mac_iteration_count_is_compared_in_bounded_time(tmp_path):
    """Whoever can write the secret plants a bundle whose MacData asks for 2**31-1 iterations; no password is
    needed, the MAC is derived (and fails) before anything is decrypted.

    Expected: the comparison refuses a bundle asking for far more work than any writer uses (keytool 10000,
    OpenSSL 2048) and treats it as different - the push replaces it at once. Before: OpenSSL runs the two
    billion rounds of the PKCS#12 KDF first (minutes of CPU per secret, per run, with no timeout): one planted
    value stalls every push of that path, and a batch of them stalls the run for hours.
    """
    chain = pki.make_chain("slow-mac.example.com")
    desired = _desired(chain)
    planted = _with_mac_iterations(desired, MAX_ITERATIONS)
    # The crafted bundle is well formed: a small count only fails the MAC check, at once.
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(base64.b64decode(_with_mac_iterations(desired, 4096)), PASSWORD.encode())
    script = textwrap.dedent(
        """
        import json, sys
        from ansible_collections.certautopilot.vault.plugins.module_utils import _layouts
        args = json.load(sys.stdin)
        desired, current = {"pkcs12": args["desired"]}, {"pkcs12": args["planted"]}
        kept = _layouts.equivalent_payload("pkcs12", desired, current, args["pw"])
        print(kept["pkcs12"] == args["planted"])
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    try:
        completed = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", script],
            input=json.dumps({"desired": desired, "planted": planted, "pw": PASSWORD}),
            capture_output=True,
            text=True,
            env=env,
            timeout=DEADLINE,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"comparing one planted PKCS#12 value took more than {DEADLINE}s (2**31-1 MAC iterations)")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"


def test_a_bundle_without_mac_or_encryption_is_not_equivalent_to_the_encrypted_one():
    """Pure-logic form of the integration finding: a plain PKCS#12 of the same key and certificates opens with
    any password. Expected: not equivalent (the encrypted bundle is written). Before: kept."""
    chain = pki.make_chain("plain-unit.example.com")
    desired = _desired(chain)
    plain = pkcs12.serialize_key_and_certificates(
        None, chain.leaf.key, chain.leaf.cert, [chain.intermediate.cert], serialization.NoEncryption()
    )
    # cryptography's NoEncryption still adds a MAC under the empty password: that one does not open with ours.
    assert _layouts.equivalent_payload(
        "pkcs12", {"pkcs12": desired}, {"pkcs12": base64.b64encode(plain).decode()}, PASSWORD
    ) == {"pkcs12": desired}
    planted = _plain_pkcs12(chain)
    kept = _layouts.equivalent_payload("pkcs12", {"pkcs12": desired}, {"pkcs12": planted}, PASSWORD)
    assert kept == {"pkcs12": desired}, "a bundle that opens without the password was taken for the encrypted one"
