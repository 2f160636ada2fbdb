"""Summarise a py-spy raw profile (collapsed stacks): top functions by own and by inclusive time.

    python bench/profile_top.py build/bench/profile-py-spy-second-1000.txt [--top 25]

A frame is ``function (file:line)``; line numbers are dropped so that a
function counts once. Inclusive time counts a function once per sample even
when it recurses.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _function(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    # Keep the path from the package on: site-packages/..., ansible_collections/...
    for marker in ("site-packages/", "ansible_collections/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('name')} ({path})"


def _process_label(frame: str) -> str:
    """'process 123:"cmdline"' (py-spy --subprocesses) -> a short name for that process."""
    command = frame.split(":", 1)[1].strip('"') if ":" in frame else frame
    if "AnsiballZ_" in command:
        return "module " + command.split("AnsiballZ_", 1)[1].split(".py", 1)[0]
    return Path(command.split()[1] if " " in command else command).name if command else frame


def summarise(
    path: str, *, process: str = ""
) -> tuple[int, collections.Counter, collections.Counter, collections.Counter]:
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    processes: collections.Counter = collections.Counter()
    total = 0
    with open(path, encoding="utf-8") as profile:
        for line in profile:
            match = _LINE.match(line.rstrip("\n"))
            if not match:
                continue
            count = int(match.group("count"))
            raw = [frame for frame in match.group("stack").split(";") if frame]
            # With --subprocesses each stack starts with its process (and its parents'): keep the innermost.
            label = ""
            while raw and raw[0].startswith("process "):
                label = _process_label(raw.pop(0))
            if label:
                processes[label] += count
                if process and process not in label:
                    continue
            frames = [_function(frame) for frame in raw]
            if not frames:
                continue
            total += count
            own[frames[-1]] += count
            for name in set(frames):
                inclusive[name] += count
    return total, own, inclusive, processes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only functions whose name or file holds this text")
    parser.add_argument("--process", default="", help="only stacks of processes whose label holds this text")
    args = parser.parse_args()
    total, own, inclusive, processes = summarise(args.profile, process=args.process)
    print(f"{args.profile}: {total} samples" + (f" in processes matching {args.process!r}" if args.process else ""))
    if processes:
        everything = sum(processes.values())
        print("samples by process:")
        for label, count in processes.most_common():
            print(f"  {100 * count / everything:5.1f}%  {label}")
    for title, counter in (("inclusive", inclusive), ("own", own)):
        print(f"\ntop {args.top} by {title} time:")
        shown = 0
        for name, count in counter.most_common():
            if args.match and args.match not in name:
                continue
            print(f"  {100 * count / total:5.1f}%  {name}")
            shown += 1
            if shown >= args.top:
                break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
