"""The Tune engine: search spaces expanded into cells (``spaces``), Tune's plug-ins (``tuning``:
schedulers, search algorithms, callbacks) and the experiment driver that runs a grid and writes its
tables (``experiment``). It builds on the core (``parity_ray/*``) and is used by the apps
(``parity_ray.cli``).
"""
