"""A stand-in for the module's Python interpreter that records the module process's peak memory.

For our cases the benchmark points ``ansible_python_interpreter`` at a
two-line shell script that runs ``<bench python> -I -S rss_exec.py LOG``, so
Ansible ends up running ``rss_exec.py LOG /…/AnsiballZ_vault_cert_push.py``.
This spawns the real interpreter (its own) with the module's arguments, waits
for it with wait4() and appends one JSON line to LOG: that one process's peak
resident set size (``ru_maxrss``, not Ansible's), its wall and CPU seconds
and its arguments. AnsiballZ runs the module inside that process, so this is
the module's own peak, input and all. (-I -S keep the wrapper's start-up
short: about 20 ms per module run.)
"""

import json
import os
import sys
import time


def main() -> int:
    log_path, *module_args = sys.argv[1:]
    started = time.monotonic()
    pid = os.posix_spawn(sys.executable, [sys.executable, *module_args], os.environ)
    _pid, status, usage = os.wait4(pid, 0)
    record = {
        "maxrss_kib": usage.ru_maxrss,
        "wall_seconds": round(time.monotonic() - started, 4),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 4),
        "argv": module_args,
    }
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
