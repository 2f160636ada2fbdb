# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The expiry report's HTML page escapes what the secrets hold: a hostile common name, path or PEM label becomes
text, never markup (no tag or attribute beyond the page's own), and the page shows no key or credential.

Against a real OpenBao; the report playbook under ansible-playbook (it is the role's report state).
"""

from __future__ import annotations

import uuid
from html.parser import HTMLParser

from leaks import assert_no_leak
from pki import make_chain
from push_runs import approle
from role_runs import html_report


class _Elements(HTMLParser):
    """Every start tag and its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def root_write(bao, path: str, data: dict) -> None:
    status, body = bao.api("POST", f"secret/data/{path}", {"data": data})
    assert status == 200, body


def test_the_html_report_escapes_a_hostile_common_name_path_and_reason(bao, ansible, vault_conn, tmp_path):
    prefix = f"certs/html-{uuid.uuid4().hex[:8]}"
    hostile = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
    leaf = make_chain(hostile, sans=["hostile.example.com"]).leaf
    root_write(bao, f"{prefix}/cn", {"certificate": leaf.cert_pem, "private_key": leaf.key_pem})
    root_write(bao, f"{prefix}/<b>x\"y'", {"certificate": leaf.cert_pem})
    label = "<img src=x onerror=alert(3)>"
    root_write(bao, f"{prefix}/label", {"certificate": f"-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n"})
    page = tmp_path / "report.html"
    login = {**vault_conn, **approle(bao, "certs")}

    run = html_report(ansible, login, prefix, page)

    assert run.rc == 0, run.output
    text = page.read_text()
    parser = _Elements()
    parser.feed(text)
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "p", "code", "table", "tr", "th", "td"}
    assert {tag for tag, _attrs in parser.tags} <= allowed, parser.tags
    attributes = {name for _tag, attrs in parser.tags for name, _value in attrs}
    assert attributes <= {"lang", "charset", "class"}, attributes
    assert "&lt;script&gt;" in text and "<script>" not in text
    # The key reaches the run only from the server, and the page is a file the harness does not read.
    assert_no_leak([run.output, text], login["secret_id"], leaf.key_pem)
