"""The synthetic L2 market: the project's embedded default data.

``model`` (the generative model, numpy only), ``generate`` (model -> Nautilus data -> catalog),
``stats`` (stylized facts, one definition for real and synthetic data), ``calibrate`` (real data ->
parameters JSON) and ``cli`` (the ``synth`` and ``calibrate`` subcommands). Nothing here replays
real data: the only thing taken from a real capture is the small parameter file.
"""
