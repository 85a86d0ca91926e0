"""A checkpoint of an untrained network (seeded He-initialized weights) with the data
record a store of the given size would give, for speed measurements that need no trained
weights (`alexnet bench predict`, `alexnet bench model --onnxruntime` makes its own).

    python tools/synthetic_checkpoint.py --classes 200 --image-size 64 --out /tmp/tiny.safetensors
"""

from __future__ import annotations

import argparse

from alexnet.models.tensorfile import save_weights
from alexnet.models.weights import untrained_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="alexnet2012")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=256, help="the store's image side")
    parser.add_argument("--out", required=True, help="a .safetensors file")
    args = parser.parse_args()
    checkpoint = untrained_checkpoint(args.model, args.classes, args.image_size)
    save_weights(checkpoint, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
