"""int8 streaming neural network: viper kernels (`kernels`) and the model loader (`model`).

`voicenode.nn.model.load(path)` reads a `<name>.vnm` + `<name>.json` pair (format:
docs/MODEL_FORMAT.md) and returns a `Model` whose `step(frame)` runs one feature frame
through every layer without allocating. The host twin is `voicenode_tools.reference.nn`.
"""
