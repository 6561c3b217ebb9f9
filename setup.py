"""parity_ray: Ray-distributed experiment platform for parity models."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "parity_ray" / "__init__.py").read_text()).group(1)

# One consistent torch stack, pinned by what breaks outside it:
# * torch < 2.15: torchaudio 2.11 (speech-commands features, parity_ray/data/datasets.py) fails at
#   import with torch 2.15;
# * torch >= 2.14: the CPU-only torch 2.13 wheel cannot load torchvision 0.29's compiled ops
#   (torchvision then fails at import: the MNIST/CIFAR readers and tv-resnet18 in parity_ray/models.py).
# torch 2.14 + torchvision 0.29.1 + torchaudio 2.11 (CUDA 13.0 builds) run on CPU too.
TORCH_STACK = ["torch>=2.14,<2.15", "torchvision==0.29.1", "torchaudio==2.11.0"]

ENGINE_FOLDERS = ("actors", "analysis", "search_spaces")  # top-level folders installed under parity_ray
PACKAGE_DIR = {f"parity_ray.{folder}": folder for folder in ENGINE_FOLDERS}
PACKAGES = find_packages(include=["parity_ray", "parity_ray.*"]) + [
    f"parity_ray.{folder}{'.' + sub if sub else ''}" for folder in ENGINE_FOLDERS
    for sub in [""] + find_packages(str(HERE / folder))
]

setup(
    name="parity_ray",
    version=VERSION,
    description="Ray-distributed experiments for parity models: learned erasure codes for resilient ML inference",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The design card's top-level folders actors/, analysis/ and search_spaces/ install as
    # parity_ray.actors, parity_ray.analysis and parity_ray.search_spaces (package_dir maps each folder
    # to its import name: one path and one name per file, no links), so installing the project claims
    # no generic top-level module name.
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"parity_ray.analysis": ["assets/*.js", "assets/*.css"]},
    install_requires=[
        *TORCH_STACK,
        "ray[tune,serve]>=2.60,<2.61",  # parity-ray tune (Tune) and serve/simulate (Serve)
        "pandas>=2.0",  # result tables as DataFrames
        "pyarrow>=14",  # Parquet tables with explicit schemas, storage (local, NFS, S3)
        "numpy",
        "scikit-learn>=1.3",  # the bundled digits dataset
        "scipy>=1.10",  # the sweep's fitted service-time tails (generalized Pareto), intervals
        "tqdm>=4.60",  # progress bars of train and simulate
        "pyyaml>=6",  # --config YAML files, Serve config files
        "matplotlib>=3.7",  # figures of analysis/ and parity-ray report
        "plotly>=5",  # ships plotly.min.js: the report's interactive charts, embedded (no network)
        "pillow>=9",  # the report's thumbnail sheets
    ],
    extras_require={
        # pytest-timeout: pytest.ini's timeout; moto: the S3 server of tests/experiment/test_s3.py;
        # nbformat, nbclient, ipykernel: tests/analysis/test_notebooks.py runs the notebooks.
        "dev": ["pytest>=8", "pytest-timeout>=2.2", "moto[server]>=5", "nbformat>=5", "nbclient>=0.8", "ipykernel>=6",
                # mlflow-skinny, optuna: the tracking and search tests of tests/experiment/test_tuning.py
                "mlflow-skinny>=2.10", "optuna>=3",
                # ciw: the independent queueing simulation tests/serve/test_queueing.py checks the sweep against
                "ciw>=3.2",
                # hypothesis: property tests of the frontend's request handler and of every command's options
                "hypothesis>=6.100"],
        "notebooks": ["jupyterlab>=4"],
        "tracking": ["mlflow-skinny>=2.10"],  # --callback mlflow (Ray's MLflowLoggerCallback); W&B: pip install wandb
        "search": ["optuna>=3"],  # search_alg = {"cls": "optuna"}; HyperOpt: pip install hyperopt
    },
    entry_points={"console_scripts": ["parity-ray=parity_ray.cli:main"]},
)
