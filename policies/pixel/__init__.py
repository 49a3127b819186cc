"""A small pixel policy: a CNN that reads only the contract's observations (main camera image, instruction).

It is a reference and a test instrument, not a model zoo: trained from recorded demonstrations
(``harness.record``) with ``python -m policies.pixel.train``, it makes the image path (render, orientation,
resize, policy preprocessing, action mapping) matter to a score, so tests can show that breaking it on purpose
collapses the score, and it gives checkpoint sweeps real training runs. See ``model``, ``train``, ``agent``.
"""
