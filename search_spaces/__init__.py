"""Search spaces for ``parity-ray tune``: each module exposes ``defaults`` and a Tune ``param_space``.

A space imports another and changes it, e.g. ``concat.py`` starts from ``paper.py``.
"""
