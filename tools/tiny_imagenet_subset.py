"""A smaller Tiny ImageNet zip, same layout: CLASSES classes drawn with SEED, the first
PER_CLASS training images of each (in name order) and all their validation images.

    python tools/tiny_imagenet_subset.py ../shared/data/tiny-imagenet-200.zip data/tiny-sub.zip

Made for the device tool, which carries at most 64 MiB: the defaults give 23,000 training
and 5,000 validation images in 59.5 MB (docs/results-figures.md, the H100 run for Figure 3).
"""

from __future__ import annotations

import argparse
import random
import zipfile


def subset(src: str, out: str, classes: int = 100, per_class: int = 230, seed: int = 0) -> None:
    root = "tiny-imagenet-200"
    with zipfile.ZipFile(src) as full, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as small:
        wnids = sorted(full.read(f"{root}/wnids.txt").decode().split())
        kept = sorted(random.Random(seed).sample(wnids, classes))
        train: dict[str, list[str]] = {w: [] for w in kept}
        for name in full.namelist():
            parts = name.split("/")  # root/train/<wnid>/images/<file>
            is_train = len(parts) == 5 and parts[1] == "train" and parts[3] == "images"
            if is_train and parts[2] in train:
                train[parts[2]].append(name)
        annotations = full.read(f"{root}/val/val_annotations.txt").decode().splitlines()
        val = [line for line in annotations if line.split("\t")[1] in train]
        small.writestr(f"{root}/wnids.txt", "\n".join(kept) + "\n")
        small.writestr(f"{root}/words.txt", full.read(f"{root}/words.txt"))
        small.writestr(f"{root}/val/val_annotations.txt", "\n".join(val) + "\n")
        for wnid in kept:
            for name in sorted(train[wnid])[:per_class]:
                small.writestr(name, full.read(name))
        for line in val:
            name = f"{root}/val/images/{line.split(chr(9))[0]}"
            small.writestr(name, full.read(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=230)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    subset(args.src, args.out, args.classes, args.per_class, args.seed)


if __name__ == "__main__":
    main()
