#!/usr/bin/env python3
"""Runs one luaunit suite through `luahost test` for ctest and checks how
many tests ran, so that a file whose tests silently stop being found (or a
runner that finds none) fails instead of passing.

usage: run_suite.py EXPECTED LUAHOST test [ARGS...]

Passes when luahost exits 0 and its summary line says exactly EXPECTED
tests ran. Output is passed through.
"""
import re
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    expected = int(sys.argv[1])
    p = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, text=True,
                       errors="replace")
    sys.stdout.write(p.stdout)
    sys.stdout.flush()
    if p.returncode != 0:
        sys.stderr.write("run_suite: luahost test exited %d\n" % p.returncode)
        return 1
    m = re.search(r"^luahost test: .*; (\d+) tests ran$", p.stdout, re.M)
    if not m:
        sys.stderr.write("run_suite: no summary line from luahost test\n")
        return 1
    ran = int(m.group(1))
    if ran != expected:
        sys.stderr.write("run_suite: %d tests ran, expected %d (update the count in "
                         "tests/CMakeLists.txt when you add or remove tests)\n"
                         % (ran, expected))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
