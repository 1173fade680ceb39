"""Record another framing of raw images in shipped models' cards and manifests, weights unchanged.

    python scripts/set_framing.py cbam_cnn cbam_cnn_lab se_cnn sa_cnn --framing ruler

Framing (edgehemo.framing) decides how a raw image of any size is cut before resizing; the
shipped 64x64 models were measured on an npz whose crops are already at the input size, which
no framing touches, so their figures stand. Each artifact's file is checked against the sha256
its manifest records before the manifest is rewritten: a file that changed must be exported
again instead. Models measured on raw images (a card whose data is not an npz) are refused.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from edgehemo.cards import read_card, write_card
from edgehemo.manifest import read_manifest, verify_artifact, write_manifest
from edgehemo.models import shipped_weights_dir
from edgehemo.preprocess import FRAMINGS


def set_framing(name: str, framing: str, weights: Path) -> list[Path]:
    """Rewrite `name`'s card and its artifacts' manifests; the files changed. Every artifact is
    checked before anything is written, so a refused model is left as it was."""
    card_path = weights / f"{name}.json"
    card = read_card(card_path)
    if not str(card.data.get("source", "")).endswith(".npz"):
        raise SystemExit(f"{name}: measured on {card.data.get('source')!r}, not an npz: its "
                         "figures depend on the framing; train or export it again instead")
    manifests = {path: read_manifest(path) for path in sorted(weights.glob(f"{name}_*.*.json"))
                 if re.fullmatch(rf"{re.escape(name)}_[a-z0-9]+\.[a-z]+\.json", path.name)}
    for manifest in manifests.values():
        verify_artifact(weights / manifest.file, manifest)
    changed = []
    if card.preprocessing.framing != framing:
        card.preprocessing = card.preprocessing.model_copy(update={"framing": framing})
        write_card(card, card_path)
        changed.append(card_path)
    for path, manifest in manifests.items():
        if manifest.preprocessing.framing != framing:
            manifest.preprocessing = manifest.preprocessing.model_copy(
                update={"framing": framing})
            write_manifest(manifest, path)
            changed.append(path)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--framing", choices=FRAMINGS, required=True)
    args = parser.parse_args()
    for name in args.models:
        for path in set_framing(name, args.framing, shipped_weights_dir()):
            print(f"{path.name}: framing {args.framing}")


if __name__ == "__main__":
    main()
