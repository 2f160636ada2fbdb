"""A syslog stand-in for module processes started by tests/support/module_process.py.

This machine has no /dev/log, so what AnsibleModule.log() sends to syslog would vanish
unseen. Python imports ``sitecustomize`` at start-up from the path; with this directory on
PYTHONPATH and CERTAUTOPILOT_SYSLOG_FILE set, every syslog line the process writes is
appended to that file instead, where a test can scan it.
"""

from __future__ import annotations

import os
import syslog

_CAPTURE = os.environ.get("CERTAUTOPILOT_SYSLOG_FILE")

if _CAPTURE:

    def _capture(*args: object) -> None:
        message = args[-1]
        with open(_CAPTURE, "a", encoding="utf-8") as capture:
            capture.write(f"{message}\n")

    syslog.syslog = _capture
    syslog.openlog = lambda *args, **kwargs: None
