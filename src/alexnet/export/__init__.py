"""Taking the network out of this package: ONNX files for ONNX Runtime and the serving
engines that read ONNX, torch.export programs (.pt2), and safetensors weights.

- `network`: the checkpoint's network in its exportable form, with the same arithmetic.
- `onnx`: the ONNX file and its parity with the package (`check_parity`).
- `program`: the torch.export program.
- `metadata`: the preprocessing each file carries, so that a runtime can make the input.
"""
