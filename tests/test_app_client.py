"""The launched app through gradio_client, on the real tiny random Janus: generate -> table -> ground."""

from __future__ import annotations

import json
import socket

import pytest

from app.ui import build_demo

LAYOUT = {"width": 512, "height": 512, "caption": "a red circle and a blue square",
          "objects": [{"phrase": "red circle", "box": [40, 40, 200, 200]},
                      {"phrase": "blue square", "box": [260, 260, 480, 480]}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(tiny_echogen):
    from gradio_client import Client

    demo = build_demo(tiny_echogen)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def test_generate_cycle_table_then_ground(client):
    from gradio_client import handle_file

    canvas, caption = client.predict(json.dumps(LAYOUT), api_name="/import_layout")
    assert caption == LAYOUT["caption"] and len(canvas["boxes"]) == 2
    # What the Generate button does: canvas -> layout JSON -> cycle.
    # Canvas boxes go in without "color": the annotator reads colors only as "rgb(r, g, b)" strings.
    boxes = [{k: v for k, v in b.items() if k != "color"} for b in canvas["boxes"]]
    canvas_in = {"image": handle_file(canvas["image"]), "boxes": boxes}
    layout_json, _ = client.predict(canvas_in, caption, api_name="/layout_from_canvas")
    assert json.loads(layout_json) == {**LAYOUT, "objects": [{**o, "box": [float(v) for v in o["box"]]}
                                                              for o in LAYOUT["objects"]]}
    gallery, table, summary, seed, cycle, picker = client.predict(
        layout_json, 5, False, 3.0, 1.0, 2, api_name="/generate")
    assert seed == 5 and len(gallery) == 2 and "Mean IoU" in summary
    assert table["headers"] == ["candidate", "#", "phrase", "IoU", "L1", "result"] and len(table["data"]) == 4
    assert sorted(c["seed"] for c in cycle["candidates"]) == [5, 6]
    assert [o["phrase"] for o in cycle["candidates"][0]["objects"]] == ["red circle", "blue square"]
    assert all(0.0 <= o["iou"] <= 1.0 for c in cycle["candidates"] for o in c["objects"])

    image, text = client.predict(cycle, 0, api_name="/send_to_grounding")
    assert text == "red circle, blue square"
    overlay, boxes = client.predict(handle_file(image), text, api_name="/ground_all")
    assert [b["phrase"] for b in boxes] == ["red circle", "blue square"] and overlay
    overlay, boxes = client.predict(handle_file(image), text, "blue square", api_name="/ground")
    assert [b["phrase"] for b in boxes] == ["blue square"]


def test_bad_input_comes_back_as_a_message(client):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="missing the key 'objects'"):
        client.predict('{"width": 64, "height": 64}', 0, False, 5.0, 1.0, 1, api_name="/generate")
    blank = client.predict(api_name="/new_canvas")
    with pytest.raises(AppError, match="no boxes"):
        client.predict({"image": handle_file(blank["image"]), "boxes": []}, "", api_name="/layout_from_canvas")
