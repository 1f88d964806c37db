"""Evaluation suite: layout fidelity, grounding accuracy and cycle consistency (`python -m train.eval`)."""
