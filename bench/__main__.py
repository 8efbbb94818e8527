"""Run the benchmarks: `python -m bench` runs them all, `python -m bench NAME [args...]` one.

Every module bench/<name>.py (not `__init__`, `__main__` or `_*`) is a benchmark, run as its own
process `python -m bench.<name>`, one after the other. Extra arguments go to the benchmark only
when a single one is named (each has its own flags). Exits non-zero if any benchmark failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def available() -> list[str]:
    return sorted(path.stem for path in HERE.glob("*.py") if not path.stem.startswith("_"))


def usage(names: list[str]) -> str:
    return (
        "usage: python -m bench [NAME [args...]]\n"
        f"benchmarks: {', '.join(names) or '(none)'}\n"
        "arguments are passed on only when one benchmark is named, e.g. python -m bench "
        f"{names[0] if names else 'NAME'} --help"
    )


def main(argv: list[str]) -> int:
    names = available()
    if argv and argv[0] in ("-h", "--help"):
        print(usage(names))
        return 0
    if argv:
        name, extra = argv[0], argv[1:]
        if name not in names:
            problem = (
                "name a benchmark before its arguments" if name.startswith("-") else f"no benchmark named {name!r}"
            )
            print(f"bench: {problem}\n{usage(names)}", file=sys.stderr)
            return 2
        selected = [name]
    else:
        selected, extra = names, []

    failed: list[str] = []
    for name in selected:
        command = [sys.executable, "-m", f"bench.{name}", *extra]
        print(f"== bench {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            code = subprocess.run(command, check=False, cwd=ROOT).returncode
        except KeyboardInterrupt:
            print(f"== bench {name}: interrupted", file=sys.stderr)
            return 130
        seconds = time.perf_counter() - started
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"== bench {name}: {status} in {seconds:.1f}s", file=sys.stderr, flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"bench: {len(failed)} of {len(selected)} failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
