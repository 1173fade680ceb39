"""Replace the README's generated blocks with docs/results/tables.md and the benchmark table."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

README = Path("README.md")


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        sys.exit(f"README has no {name} block")
    return pattern.sub(lambda m: m.group(1) + body.strip() + "\n" + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bench", type=Path, nargs="?",
                        default=Path("docs/results/bench_cbam_cnn.md"),
                        help="the benchmark table to insert (Markdown)")
    args = parser.parse_args()
    text = README.read_text()
    text = replace_block(text, "tables", Path("docs/results/tables.md").read_text())
    text = replace_block(text, "bench", args.bench.read_text())
    README.write_text(text)


if __name__ == "__main__":
    main()
