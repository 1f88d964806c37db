"""`build_demo(model)`: the Layout and Grounding tabs around one injected EchoGen.

Models run from buttons only (the canvas fires `change` on every mouse release). Each action
is a named API endpoint; see app/README.md for how to call them with gradio_client.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from gradio_image_annotation import image_annotator

from app.cycle_view import TABLE_HEADERS
from app.handlers import MAX_CANDIDATES, MAX_SEED, Handlers
from app.uploads import UploadedImage

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
QUEUE_SIZE = 16
GPU_SECONDS = 120

INTRO = """\
# EchoGen layout editor
Draw boxes, name them, generate: the same model then finds each phrase again in its own
image, and the dashed boxes show where the image disagrees with your layout.
"""
SHORTCUTS = (
    "**Canvas:** drag to draw a box, then type its phrase and press Enter · double-click a box "
    "(or select it and press **E**) to rename it · **Delete** removes the selected box · "
    "**C** draw mode · **D** move/resize mode · scroll to zoom · **Space** resets the view"
)
GROUNDING_INTRO = (
    "Upload any image (or send a generated one from the Layout tab), type a caption or a list "
    "of phrases, then click a highlighted phrase to draw its box, or press **Ground all**."
)


def on_gpu(fn):
    """`spaces.GPU(fn)` on Hugging Face ZeroGPU Spaces, `fn` everywhere else."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=GPU_SECONDS)(fn)


def example_layouts() -> tuple[list[list[str]], list[str]]:
    """([[layout JSON text]], labels) from assets/examples/*.json, sorted by file name."""
    paths = sorted(EXAMPLES_DIR.glob("*.json"))
    labels = [p.stem.split("-", 1)[-1].replace("_", " ") for p in paths]
    return [[p.read_text(encoding="utf-8")] for p in paths], labels


def build_demo(model, queue_size: int = QUEUE_SIZE) -> gr.Blocks:
    h = Handlers(model)
    model_events = dict(concurrency_limit=1, concurrency_id="model")  # one model, one job at a time
    with gr.Blocks(title="EchoGen layout editor") as demo:
        gr.Markdown(INTRO)
        images = gr.State([])  # raw generated images, rank order
        with gr.Tabs() as tabs:
            with gr.Tab("Layout", id="layout"):
                with gr.Row():
                    with gr.Column(scale=1):
                        canvas = image_annotator(
                            value=h.new_canvas(), label="Layout", image_type="pil", sources=None,
                            show_clear_button=False, show_share_button=False, show_download_button=False,
                            show_remove_button=True, box_min_size=8, elem_id="canvas",
                        )
                        gr.Markdown(SHORTCUTS, elem_id="shortcuts")
                        caption = gr.Textbox(label="Caption of the whole image", elem_id="caption",
                                             placeholder="a red circle and a blue square on a white background")
                        with gr.Row():
                            seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED,
                                             elem_id="seed")
                            randomize = gr.Checkbox(label="Randomize seed", value=True, elem_id="randomize")
                            num_candidates = gr.Slider(1, MAX_CANDIDATES, value=2, step=1, label="Candidates")
                        with gr.Row():
                            # start at the checkpoint's own sampling defaults (EchoGen.sampling)
                            cfg = gr.Slider(1, 10, value=model.sampling.cfg, step=0.5, label="CFG (guidance)",
                                            elem_id="cfg")
                            temperature = gr.Slider(0, 2, value=model.sampling.temperature, step=0.05,
                                                    label="Temperature (0 = greedy)", elem_id="temperature")
                        with gr.Row():
                            generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                            new_btn = gr.Button("New canvas")
                    with gr.Column(scale=1):
                        gallery = gr.Gallery(label="Cycle: your boxes solid, re-grounded boxes dashed",
                                             columns=2, height="auto", format="png", object_fit="contain",
                                             elem_id="cycle")
                        summary = gr.Markdown(elem_id="summary")
                        table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, label="Per object",
                                             elem_id="cycle-table")
                        picker = gr.Radio(label="Candidate", choices=[], elem_id="candidate")
                        with gr.Row():
                            edit_btn = gr.Button("Edit this layout")
                            to_ground_btn = gr.Button("Ground this image")
                        with gr.Accordion("Cycle result (JSON)", open=False):
                            cycle_data = gr.JSON(label="Layout, seeds, scores and re-grounded boxes")
                with gr.Accordion("Import / export layout JSON", open=False):
                    layout_code = gr.Code(language="json", lines=8, label="Layout (model/ schema, JSONL or "
                                          "InstanceDiffusion)", elem_id="layout-json")
                    with gr.Row():
                        import_btn = gr.Button("Load into canvas")
                        upload_btn = gr.UploadButton("Upload .json / .jsonl", file_types=[".json", ".jsonl"])
                        export_btn = gr.Button("Export canvas")
                        download_btn = gr.DownloadButton("Download layout.json")
                # Wired before gr.Examples, whose own event would otherwise take the name "import_layout".
                import_btn.click(h.import_layout, layout_code, [canvas, caption], api_name="import_layout")
                examples, labels = example_layouts()
                if examples:
                    gr.Examples(examples, inputs=[layout_code], outputs=[canvas, caption], fn=h.import_layout,
                                run_on_click=True, cache_examples=False, example_labels=labels,
                                label="Example layouts")
            with gr.Tab("Grounding", id="ground"):
                gr.Markdown(GROUNDING_INTRO)
                with gr.Row():
                    with gr.Column(scale=1):
                        ground_image = UploadedImage(label="Image", type="filepath", image_mode=None, format="png",
                                                sources=["upload", "clipboard"], height=400, elem_id="ground-image")
                        ground_text = gr.Textbox(label="Caption or phrases", elem_id="ground-text",
                                                 placeholder="a red circle and a blue square")
                        phrase_view = gr.HighlightedText(label="Phrases (click one)", show_inline_category=False,
                                                         interactive=False, elem_id="phrases")
                        selected = gr.Textbox(label="Selected phrase", interactive=False)
                        ground_all_btn = gr.Button("Ground all", variant="primary", elem_id="ground-all")
                    with gr.Column(scale=1):
                        ground_out = gr.Image(label="Found boxes", format="png", interactive=False, height=400,
                                              elem_id="ground-out")
                        ground_data = gr.JSON(label="Boxes (pixels of the uploaded image)")

        generate_btn.click(
            h.layout_from_canvas, [canvas, caption], [layout_code, canvas], api_name="layout_from_canvas",
            show_progress_on=[layout_code],  # an error badge over the canvas would hide the drawing
        ).success(
            on_gpu(h.generate), [layout_code, seed, randomize, cfg, temperature, num_candidates],
            [gallery, table, summary, seed, cycle_data, picker, images], api_name="generate",
            show_progress_on=[gallery], **model_events,
        )
        new_btn.click(h.new_canvas, None, canvas, api_name="new_canvas")
        gallery.select(h.pick_candidate, None, picker, api_visibility="private")
        edit_btn.click(h.edit_layout, [cycle_data, picker], [canvas, caption, seed, randomize],
                       api_name="edit_layout")
        to_ground_btn.click(h.send_to_grounding, [images, cycle_data, picker], [ground_image, ground_text, tabs],
                            api_name="send_to_grounding")
        upload_btn.upload(h.import_file, upload_btn, [layout_code, canvas, caption], api_name="import_file")
        export_btn.click(h.export_layout, [canvas, caption], [layout_code, download_btn], api_name="export_layout")

        ground_text.change(h.phrases, ground_text, phrase_view, api_name="phrases", show_progress="hidden",
                           trigger_mode="always_last")
        phrase_view.select(h.pick_phrase, None, selected, api_visibility="private", show_progress="hidden").success(
            on_gpu(h.ground), [ground_image, ground_text, selected], [ground_out, ground_data], api_name="ground",
            **model_events,
        )
        ground_all_btn.click(on_gpu(h.ground_all), [ground_image, ground_text], [ground_out, ground_data],
                             api_name="ground_all", **model_events)
    return demo.queue(max_size=queue_size, default_concurrency_limit=1)
