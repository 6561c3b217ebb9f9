"""parity_ray: Ray-distributed experiments for parity models (learned erasure codes for inference)."""

__version__ = "0.1.0"

from .errors import UsageError  # noqa: E402

__all__ = ["__version__", "UsageError"]
