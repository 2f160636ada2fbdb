"""A Python interpreter stand-in that measures the module process it runs.

The benchmark points ``ansible_python_interpreter`` at a small shell script
that runs this file (``python -I -S rss_exec.py``). Ansible then starts
``<script> /…/AnsiballZ_vault_cert_push.py``; this wrapper spawns the real
interpreter with the same arguments, waits for it with wait4(), and appends one
JSON line to the log: the module process's own peak resident set size
(``ru_maxrss`` of that one child, not of Ansible), its wall and CPU time, and
its arguments. AnsiballZ runs the module inside that process, so this is the
peak of the module itself, input and all.

With ``profile`` set, the real interpreter runs under py-spy (sampling, whole
process) or cProfile, and the profile is written next to the log.

Configured by argv[1:4] of the shell script: the real python, the log file,
the profile mode (``none``, ``py-spy`` or ``cprofile``).
"""

import json
import os
import sys
import time


def main() -> int:
    real_python, log_path, profile = sys.argv[1:4]
    module_args = sys.argv[4:]
    command = [real_python, *module_args]
    profile_path = sampler = None
    if profile != "none":
        profile_path = f"{log_path}.{os.getpid()}.{'txt' if profile == 'py-spy' else 'prof'}"
        if profile == "cprofile":
            command = [real_python, "-m", "cProfile", "-o", profile_path, *module_args]
    started = time.monotonic()
    pid = os.posix_spawn(command[0], command, os.environ)
    if profile == "py-spy":
        # Attached from outside, its chatter kept off the module's stdout (which Ansible parses).
        py_spy = os.path.join(os.path.dirname(real_python), "py-spy")
        quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0) for fd in (1, 2)]
        sampler = os.posix_spawn(
            py_spy,
            [
                py_spy,
                "record",
                "--nonblocking",
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                profile_path,
                "--pid",
                str(pid),
            ],
            os.environ,
            file_actions=quiet,
        )
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    if sampler is not None:
        os.waitpid(sampler, 0)
    record = {
        "maxrss_kib": usage.ru_maxrss,
        "wall_seconds": round(wall, 4),
        "user_seconds": round(usage.ru_utime, 4),
        "system_seconds": round(usage.ru_stime, 4),
        "argv": module_args,
        "profile": profile_path,
    }
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
