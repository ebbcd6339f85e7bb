#!/usr/bin/env python3
"""Replaces (or appends) one section of a results file, so that re-running a
benchmark script updates its own figures and leaves the other scripts' alone.

Usage: results-section.py RESULTS.md NAME < section.md

The section is kept between "<!-- BEGIN NAME -->" and "<!-- END NAME -->".
"""
import re
import sys
from pathlib import Path

path, name = Path(sys.argv[1]), sys.argv[2]
body = sys.stdin.read().rstrip("\n") + "\n"
block = f"<!-- BEGIN {name} -->\n{body}<!-- END {name} -->\n"
old = path.read_text() if path.exists() else ""
pat = re.compile(rf"<!-- BEGIN {re.escape(name)} -->\n.*?<!-- END {re.escape(name)} -->\n", re.S)
if pat.search(old):
    new = pat.sub(lambda _: block, old, count=1)
else:
    new = (old.rstrip("\n") + "\n\n" if old.strip() else "") + block
path.write_text(new)
