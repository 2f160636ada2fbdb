"""How a refused run must look: failed with the collection's own message, not a crash."""

from __future__ import annotations

import typing as t


def assert_failed_cleanly(run: t.Any) -> None:
    """Failed, with no traceback and no crash marker in the module's message, streams or the run's output.

    ansible-core 2.19 prints every module failure as "Module failed: <msg>", so that marker is looked for in the
    module's own message and streams only.
    """
    assert run.failed, run.output
    assert "Traceback" not in run.output, run.output
    for text in (run.msg, str(run.result.get("module_stderr", "")), str(run.result.get("module_stdout", ""))):
        assert "Traceback" not in text, run.output
        assert "Module failed" not in text, run.output
        assert "MODULE FAILURE" not in text, run.output
