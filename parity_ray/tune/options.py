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
    cpus_per_trial: float = field(default=1.0, metadata={"gt": 0})  # CPUs each trial reserves
    gpus_per_trial: float = field(default=0.0, metadata={"min": 0})  # GPUs each trial reserves; fractions share a GPU, e.g. 0.25
    max_concurrent_trials: Optional[int] = field(default=None, metadata={"min": 1})  # trials at once (default: as many as the resources allow)
    max_failures: int = field(default=2, metadata={"min": 0})  # retries of a failing trial, each from its last checkpoint
    checkpoint_every: int = field(default=1, metadata={"min": 1})  # epochs between checkpoints (the last epoch always has one)
    overrides: List[str] = field(default_factory=list, metadata={"flag": "--set", "append": True, "metavar": "KEY=VALUE"})  # override a config key for every trial; a list makes it a grid axis (--set k=[2,3]); scheduler=<name|none>, scheduler.<setting>=V, search_alg=..., search_alg.<setting>=V change the space's Tune scheduler and search algorithm
    resume: bool = False  # continue an interrupted experiment of the same space
    smoke_test: bool = False  # one tiny epoch per trial on CPU, to check the set-up
    resource_check: bool = field(default=True, metadata={"negate": "--no-resource-check", "negate_help": "allow resources no current node has (autoscaling)"})  # refuse resources no node has
    progress: bool = field(default=True, metadata={"negate": "--no-progress", "negate_help": "no progress bars"})  # progress bars
    callbacks: List[Any] = field(default_factory=list, metadata={"flag": "--callback", "append": True, "metavar": "SPEC"})  # add a Tune callback (repeatable): a registered name (parity-ray list), package.module.Class, or a JSON class-spec such as '{"cls": "mlflow", "tracking_uri": "file:./mlruns"}'
    data_root: Optional[str] = None  # folder holding the datasets every trial reads (else $PARITY_RAY_DATA); a relative path is taken from where you run the command

    def check(self) -> None:
        """The numbers in their fields' ranges (``parity_ray.bounds``) and the storage writable; a
        one-line :class:`UsageError` naming the flag otherwise."""
        from ..bounds import check_fields, check_output_dir

        check_fields(self, label=lambda f: f.name if f.name == "space" else "--" + f.name.replace("_", "-"))
        check_output_dir(self.storage, "--storage")

    @property
    def uri(self) -> str:
        return storage.join(storage.canonical(self.storage), self.name)
