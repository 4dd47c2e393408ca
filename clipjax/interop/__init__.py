"""Interoperability with OpenCLIP and Hugging Face: configs (configs.py), parameter layouts (weights.py), files
(files.py). The converters are numpy-only; PyTorch is needed only for pickled checkpoints and the parity tests."""
