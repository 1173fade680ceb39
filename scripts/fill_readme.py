"""Replace the README's generated blocks with docs/results/tables.md and the benchmark table."""

from __future__ import annotations

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
    text = README.read_text()
    text = replace_block(text, "tables", Path("docs/results/tables.md").read_text())
    bench = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/bench_cbam_cnn.md")
    text = replace_block(text, "bench", bench.read_text())
    README.write_text(text)


if __name__ == "__main__":
    main()
