"""Training, data and evaluation code for EchoGen (Shapes World, metrics, eval CLIs)."""
