"""clipjax: CLIP training in JAX/Flax (token reduction, global contrastive losses, caption rewrites)."""
from pathlib import Path

from setuptools import find_packages, setup

REQUIREMENTS = [
    line.strip()
    for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#") and not line.startswith("pytest")
]

setup(
    name="clipjax",
    version="0.1.0",
    description="Efficient CLIP training in JAX/Flax on GPUs and TPUs.",
    python_requires=">=3.11",
    packages=find_packages(include=["clipjax", "clipjax.*"]),
    package_data={"clipjax": ["assets/*", "tools/assets/*"]},
    install_requires=REQUIREMENTS,
    extras_require={"test": ["pytest==9.2.0", "pytest-xdist==3.8.0"],
                    # OpenCLIP / Hugging Face PyTorch models, for the weight-conversion tools' .pt files and the parity
                    # tests only (open_clip imports torchvision, which needs the torch build it was made for)
                    "interop": ["torch==2.14.1", "torchvision==0.29.1", "open_clip_torch==3.3.0"]},
)
