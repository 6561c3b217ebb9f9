"""``parity-ray tune``'s options: what an experiment run takes (its flags come from here).

Kept apart from the driver (``experiment``) so that reading them imports neither Ray nor Tune.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from .. import storage
from ..errors import UsageError


@dataclass
class TuneOptions:
    """``parity-ray tune``: a search space run through Ray Tune into an experiment folder."""

    space: str = field(metadata={"positional": None})  # a search_spaces name (quick, paper, concat, ...) or a .py file
    name: str = field(metadata={"required": True})  # experiment name (folder under --storage)
    storage: str = "./results"  # local/NFS path or s3://bucket/prefix
    address: Optional[str] = None  # Ray cluster address (e.g. auto); default: start a local Ray
    cpus_per_trial: float = 1.0  # CPUs each trial reserves
    gpus_per_trial: float = 0.0  # GPUs each trial reserves; fractions share a GPU, e.g. 0.25
    max_concurrent_trials: Optional[int] = None  # trials at once (default: as many as the resources allow)
    max_failures: int = 2  # retries of a failing trial, each from its last checkpoint
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch always has one)
    overrides: List[str] = field(default_factory=list, metadata={"flag": "--set", "append": True, "metavar": "KEY=VALUE"})  # override a config key for every trial; a list makes it a grid axis (--set k=[2,3]); scheduler=<name|none>, scheduler.<setting>=V, search_alg=..., search_alg.<setting>=V change the space's Tune scheduler and search algorithm
    resume: bool = False  # continue an interrupted experiment of the same space
    smoke_test: bool = False  # one tiny epoch per trial on CPU, to check the set-up
    resource_check: bool = field(default=True, metadata={"negate": "--no-resource-check", "negate_help": "allow resources no current node has (autoscaling)"})  # refuse resources no node has
    progress: bool = field(default=True, metadata={"negate": "--no-progress", "negate_help": "no progress bars"})  # progress bars
    callbacks: List[Any] = field(default_factory=list, metadata={"flag": "--callback", "append": True, "metavar": "SPEC"})  # add a Tune callback (repeatable): a registered name (parity-ray list), package.module.Class, or a JSON class-spec such as '{"cls": "mlflow", "tracking_uri": "file:./mlruns"}'
    data_root: Optional[str] = None  # folder holding the datasets every trial reads (else $PARITY_RAY_DATA); a relative path is taken from where you run the command

    def check(self) -> None:
        """The numbers in range; a :class:`UsageError` naming the flag otherwise."""
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
        if self.max_failures < 0 or self.checkpoint_every < 1:
            raise UsageError("--max-failures must be >= 0 and --checkpoint-every >= 1")

    @property
    def uri(self) -> str:
        return storage.join(storage.canonical(self.storage), self.name)
