"""EchoGen layout editor: `python app.py [--model DIR] [--adapter DIR] [--device cpu|cuda|auto]`.

Every flag has an environment variable, for Hugging Face Spaces: ECHOGEN_MODEL,
ECHOGEN_ADAPTER, ECHOGEN_DEVICE, ECHOGEN_HOST (or GRADIO_SERVER_NAME) and ECHOGEN_PORT (or
GRADIO_SERVER_PORT, or PORT). The model is loaded once here and handed to the UI.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def parse_args(argv: list[str] | None = None, env: dict[str, str] | None = None) -> argparse.Namespace:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=env.get("ECHOGEN_MODEL") or None,
                        help="checkpoint directory or cached hub id (default: the built-in assets/echogen-shapes)")
    parser.add_argument("--adapter", default=env.get("ECHOGEN_ADAPTER") or None, help="LoRA adapter directory")
    parser.add_argument("--device", default=env.get("ECHOGEN_DEVICE") or "auto", help="cpu, cuda or auto")
    parser.add_argument("--host", default=env.get("ECHOGEN_HOST") or env.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                        help="address to listen on (0.0.0.0 to serve the network)")
    parser.add_argument("--port", type=int,
                        default=int(env.get("ECHOGEN_PORT") or env.get("GRADIO_SERVER_PORT") or env.get("PORT") or 7860))
    parser.add_argument("--queue-size", type=int, default=16, help="requests waiting at most; more are turned away")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:  # on ZeroGPU Spaces `spaces` must patch CUDA before torch starts
        import spaces  # noqa: F401
    except ImportError:
        pass

    from model import EchoGen, ModelLoadError

    from app.ui import build_demo
    from app.uploads import MAX_UPLOAD_MB

    try:
        model = EchoGen.load(args.model, adapter=args.adapter, device=args.device)
    except ModelLoadError as err:
        sys.exit(f"error: {err}")
    logging.info("model loaded on %s: %d px images", model.device, model.image_size)
    demo = build_demo(model, queue_size=args.queue_size)
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=f"{MAX_UPLOAD_MB}mb")


if __name__ == "__main__":
    main()
