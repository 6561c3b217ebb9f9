"""parity_ray: Ray-distributed experiment platform for parity models."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "parity_ray" / "__init__.py").read_text()).group(1)

# One consistent torch stack. torch 2.14 + torchvision 0.29.1 + torchaudio 2.11 (CUDA 13.0 builds)
# run on CPU too; the CPU-only torch 2.13 wheel cannot load torchvision's compiled ops and
# torch 2.15 breaks torchaudio 2.11 at import.
TORCH_STACK = ["torch>=2.14,<2.15", "torchvision==0.29.1", "torchaudio==2.11.0"]

setup(
    name="parity_ray",
    version=VERSION,
    description="Ray-distributed experiments for parity models: learned erasure codes for resilient ML inference",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["parity_ray", "parity_ray.*", "search_spaces", "actors", "actors.*", "analysis", "analysis.*"]),
    package_data={"analysis": ["assets/*.js", "assets/*.css"]},
    install_requires=[
        *TORCH_STACK,
        "ray[tune,serve]>=2.60,<2.61",
        "pandas>=2.0",
        "pyarrow>=14",
        "numpy",
        "scikit-learn>=1.3",
        "tqdm>=4.60",
        "pyyaml>=6",
        "matplotlib>=3.7",  # figures of analysis/ and parity-ray report
        "plotly>=5",  # ships plotly.min.js: the report's interactive charts, embedded (no network)
        "pillow>=9",  # the report's thumbnail sheets
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout>=2.2", "moto[server]>=5", "nbformat>=5", "nbclient>=0.8", "ipykernel>=6",
                "mlflow-skinny>=2.10", "optuna>=3"],  # the tracking and search tests use the real packages
        "notebooks": ["jupyterlab>=4"],
        "tracking": ["mlflow-skinny>=2.10"],  # --callback mlflow (Ray's MLflowLoggerCallback); W&B: pip install wandb
        "search": ["optuna>=3"],  # search_alg = {"cls": "optuna"}; HyperOpt: pip install hyperopt
    },
    entry_points={"console_scripts": ["parity-ray=parity_ray.cli:main"]},
)
