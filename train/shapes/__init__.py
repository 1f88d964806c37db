"""Shapes World: a synthetic world of colored shapes whose boxes are exact ground truth."""
