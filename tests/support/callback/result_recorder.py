"""Callback for the integration tests: append every task result to a JSON-lines file.

Not part of the collection. tests/support/ansible_runner.py enables it next to
the default stdout callback, so the console output stays what a user sees while
the test reads each task's result dict (failed, msg, changed, check mode...)
from the file named by CERTAUTOPILOT_TEST_RESULTS.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: result_recorder
type: aggregate
short_description: write task results to a JSON-lines file (tests only)
description:
  - Appends one JSON object per task result to the file named by E(CERTAUTOPILOT_TEST_RESULTS).
requirements:
  - enabled in callbacks_enabled
"""


RESULTS_FILE_ENV = "CERTAUTOPILOT_TEST_RESULTS"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "result_recorder"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get(RESULTS_FILE_ENV)

    def _record(self, status, result, **extra):
        if not self._path:
            return
        # ansible-core 2.19 gave TaskResult public task, host and result; before, only _task, _host, _result.
        task_result = getattr(result, "result", None)
        if task_result is None:
            task_result = result._result
        task = getattr(result, "task", None) or result._task
        host = getattr(result, "host", None) or result._host
        record = {
            "status": status,
            "task": task.get_name(),
            "action": task.action,
            "host": host.get_name(),
            "result": task_result,
        }
        record.update(extra)
        with open(self._path, "a", encoding="utf-8") as results:
            results.write(json.dumps(record, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._record("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record("failed", result, ignore_errors=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._record("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._record("unreachable", result)
