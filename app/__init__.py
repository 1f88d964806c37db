"""EchoGen's layout editor: a Gradio app built around one injected `model.EchoGen`.

`app.ui.build_demo(model)` builds the Blocks; `app.py` at the repository root loads the
model once and launches it. Importing this package loads no model.
"""
