"""edgecnn training: ``python -m train`` fits a documented CNN and writes a bundle."""

import os

# TensorFlow's C++ start-up chatter (CPU features, oneDNN notes) hides real messages;
# set TF_CPP_MIN_LOG_LEVEL=0 to see it again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
