"""A checkpoint of an untrained network (seeded He-initialized weights) with the data
record a store of the given size would give, for speed measurements that need no trained
weights (`alexnet bench predict`, `alexnet bench model --onnxruntime` makes its own).

    python tools/synthetic_checkpoint.py --classes 200 --image-size 64 --out /tmp/tiny.safetensors
"""

from __future__ import annotations

import argparse

import torch

from alexnet.models import checkpoint as ckpt
from alexnet.models.registry import VARIANTS, create_model
from alexnet.models.tensorfile import save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="alexnet2012")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=256, help="the store's image side")
    parser.add_argument("--out", required=True, help="a .safetensors file")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=args.classes, init="kaiming").eval()
    side = args.image_size
    save_weights({
        "model": ckpt.model_record(model),
        "state_dict": model.state_dict(),
        "data": {
            "class_ids": [f"c{i}" for i in range(args.classes)],
            "class_names": [f"class {i}" for i in range(args.classes)],
            "channels": 3, "image_size": side, "view_size": max(side, 256),
            "crop_size": VARIANTS[args.model].input_size,
            "mean_image": torch.full((side, side, 3), 110.0), "normalize": "std",
            "scale": torch.full((3,), 1 / 60),
        },
    }, args.out)  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
