"""edgecnn export: ``python -m export`` turns a bundle's Keras model into checked edge files."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out
