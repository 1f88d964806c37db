"""app.py's settings and the Blocks that build_demo makes (no server, no browser)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest
from app_fakes import ScriptedEchoGen

from app import ui

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = {"layout_from_canvas", "generate", "new_canvas", "edit_layout", "send_to_grounding", "import_layout",
             "import_file", "export_layout", "phrases", "ground", "ground_all"}


def load_app_script():
    """app.py as a module (the name `app` is the package)."""
    spec = importlib.util.spec_from_file_location("echogen_app_script", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_importing_app_py_loads_nothing_heavy():
    code = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('a', 'app.py'); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "print(sorted(k for k in ('torch', 'gradio', 'transformers', 'model') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_flags_override_env_vars_which_override_defaults():
    parse = load_app_script().parse_args
    defaults = parse([], env={})
    assert (defaults.model, defaults.adapter, defaults.device, defaults.host, defaults.port) == (
        None, None, "auto", "127.0.0.1", 7860)
    env = {"ECHOGEN_MODEL": "/m", "ECHOGEN_ADAPTER": "/a", "ECHOGEN_DEVICE": "cuda", "GRADIO_SERVER_NAME": "0.0.0.0",
           "GRADIO_SERVER_PORT": "7000"}
    args = parse([], env=env)
    assert (args.model, args.adapter, args.device, args.host, args.port) == ("/m", "/a", "cuda", "0.0.0.0", 7000)
    args = parse(["--model", "/x", "--port", "9000"], env={**env, "ECHOGEN_HOST": "::", "ECHOGEN_PORT": "8000"})
    assert (args.model, args.host, args.port) == ("/x", "::", 9000)


def test_a_bad_model_path_exits_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="model directory not found"):
        load_app_script().main(["--model", str(tmp_path / "nope"), "--device", "cpu"])


def test_build_demo_names_every_action_and_bounds_the_queue():
    demo = ui.build_demo(ScriptedEchoGen(), queue_size=3)
    public = {d["api_name"] for d in demo.config["dependencies"] if d.get("api_visibility") == "public"}
    assert public == ENDPOINTS
    assert demo._queue.max_size == 3


def test_sampling_sliders_start_at_the_models_own_defaults():
    fake = ScriptedEchoGen()
    demo = ui.build_demo(fake)
    values = {c["props"].get("elem_id"): c["props"].get("value") for c in demo.config["components"]}
    assert (values["cfg"], values["temperature"]) == (fake.sampling.cfg, fake.sampling.temperature)


def test_examples_are_valid_layouts():
    from model.layout import loads_layouts

    examples, labels = ui.example_layouts()
    assert len(examples) == len(labels) >= 4 and "circle left of square" in labels
    for (text,) in examples:
        assert loads_layouts(text)[0].objects


def test_on_gpu_uses_spaces_when_importable(monkeypatch):
    def f(x):
        return x

    monkeypatch.setitem(sys.modules, "spaces", None)  # import fails: not on Spaces
    assert ui.on_gpu(f) is f
    seen = {}

    def gpu(duration):
        seen["duration"] = duration
        return lambda fn: ("wrapped", fn)

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    assert ui.on_gpu(f) == ("wrapped", f) and seen["duration"] == ui.GPU_SECONDS
