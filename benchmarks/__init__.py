"""``python -m benchmarks``: how fast, how big and how accurate each exported file is, on the
machine at hand, against the Keras model it came from.

Kept import-free: ``benchmarks._child`` times its own imports from a cold interpreter.
"""
