"""Bad input sent to a running studio, as a page or a crafted client request sends it: every case
gets a message in the response (the status line: one sentence, no traceback; or gradio's own
refusal), nothing is read that was not uploaded, and the server keeps serving.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from studio_server import EXAMPLES, edit_args

EXAMPLE = EXAMPLES / "sneaker-0.png"


@pytest.fixture(scope="module")
def client(studio, tmp_path_factory):
    from gradio_client import Client

    return Client(studio.url, verbose=False, download_files=tmp_path_factory.mktemp("dl"))


def upload(path: Path):
    from gradio_client import handle_file

    return handle_file(str(path))


def status_of(client, *args, api: str = "/edit") -> str:
    """The status line an action returns (first output)."""
    return client.predict(*args, api_name=api)[0]


def assert_message(status: str, *words: str) -> None:
    assert status.startswith("**Error:** "), status
    assert "Traceback" not in status and "\n" not in status, status
    for w in words:
        assert w.lower() in status.lower(), status


def still_serving(client) -> None:
    status = status_of(client, *edit_args(upload(EXAMPLE), "sneaker", "sandal", ["sdedit"]))
    assert status.startswith("Done"), status


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` pixels, with no pixel data (a bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_not_an_image(client, tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_text("this is not a picture")
    status = status_of(client, *edit_args(upload(fake), "sneaker", "sandal", ["ngdm"]))
    assert_message(status, "not a readable image")
    assert str(tmp_path) not in status and "/tmp" not in status  # no server paths either
    still_serving(client)


def test_huge_images(client, tmp_path):
    big = tmp_path / "big.png"
    Image.new("L", (5000, 5000)).save(big)  # 25 MP: readable, but beyond the studio's side
    assert_message(
        status_of(client, *edit_args(upload(big), "sneaker", "sandal", ["ngdm"])), "4096"
    )
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(100_000, 100_000))  # refused from the header, not decoded
    assert_message(
        status_of(client, *edit_args(upload(bomb), "sneaker", "sandal", ["ngdm"])), "pixels"
    )
    still_serving(client)


def test_upload_over_the_size_limit(client, tmp_path):
    blob = tmp_path / "large.png"
    blob.write_bytes(b"\x89PNG" + bytes(11 * 1024 * 1024))  # gradio refuses it at the upload
    with pytest.raises(Exception, match=r"(?i)size|large|413"):
        client.predict(*edit_args(upload(blob), "sneaker", "sandal", ["ngdm"]), api_name="/edit")
    still_serving(client)


def test_map_of_the_wrong_shape(client, tmp_path):
    small = tmp_path / "map.png"
    Image.new("L", (20, 30), 255).save(small)  # another aspect (any square size is resized)
    shown = client.predict("sneaker-0.png", api_name="/example")[0]  # the page's editor value
    editor = {"background": upload(shown["background"]), "layers": [], "composite": None}
    _, note = client.predict(upload(small), editor, api_name="/map")
    assert_message(note, "20×30", "square")
    layer = tmp_path / "layer.png"  # a painted layer that does not cover the image
    Image.fromarray(np.full((100, 100, 4), 255, np.uint8)).save(layer)
    painted = {**editor, "layers": [upload(layer)]}
    args = edit_args(upload(EXAMPLE), "sneaker", "sandal", ["ngdm"], editor=painted)
    assert_message(status_of(client, *args), "100×100", "28×28")
    still_serving(client)


def test_unknown_class(client):
    args = edit_args(upload(EXAMPLE), "sneaker", "dinosaur", ["ngdm"])
    assert_message(status_of(client, *args), "dinosaur", "Sandal")  # the valid names are listed
    assert_message(status_of(client, *edit_args(upload(EXAMPLE), "", "sandal", ["ngdm"])), "source")
    still_serving(client)


def test_out_of_range_values(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="greater than maximum"):  # gradio's own slider bound
        client.predict(*edit_args(upload(EXAMPLE), "sneaker", "sandal", ["ef"], steps=10**6),
                       api_name="/edit")  # fmt: skip
    args = edit_args(upload(EXAMPLE), "sneaker", "sandal", ["ef"], steps=10, skip=10)
    assert_message(status_of(client, *args), "skip 10", "steps 10")  # in range, not together
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict(*edit_args(upload(EXAMPLE), "sneaker", "sandal", ["p2p"]), api_name="/edit")
    edit = edit_args(None, "sneaker", "sandal", [], example="sneaker-0.png")
    seeds = [*edit[:5], "ngdm", 2.5, *edit[6:]]  # 2.5 seeds: within the slider, not whole
    status = client.predict(*seeds, api_name="/seeds")[0]
    assert_message(status, "seeds", "whole number from 1 to 8")
    still_serving(client)


def crafted(studio, data: list, api: str = "edit") -> tuple[str, object]:
    """POST a request as raw JSON (what no page sends) and read the event it ends with."""
    base = studio.url + "gradio_api"
    body = json.dumps({"data": data}, allow_nan=True)  # NaN: not JSON, but parsers take it
    r = httpx.post(f"{base}/call/{api}", content=body,
                   headers={"content-type": "application/json"}, timeout=60)  # fmt: skip
    r.raise_for_status()
    event, payload = None, None
    with httpx.stream("GET", f"{base}/call/{api}/{r.json()['event_id']}", timeout=120) as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                payload = json.loads(line.split(":", 1)[1])
    return event, payload


def test_crafted_requests(studio, client):
    args = edit_args(
        None, "sneaker", "sandal", ["ngdm"], example="sneaker-0.png", guidance=float("nan")
    )
    event, payload = crafted(studio, args)
    assert event == "complete"
    assert_message(payload[0], "guidance", "finite")
    before = sorted(p.name for p in studio.app_folder().rglob("*"))
    for path in ("/etc/passwd", str(EXAMPLE)):  # a server path, never uploaded
        file = {"path": path, "orig_name": "x.png", "meta": {"_type": "gradio.FileData"}}
        event, _ = crafted(studio, edit_args(file, "sneaker", "sandal", ["ngdm"]))
        assert event == "error"  # gradio refuses a file that was not uploaded
    assert "passwd" not in " ".join(sorted(p.name for p in studio.app_folder().rglob("*")))
    assert len(before) > 0
    event, _ = crafted(
        studio, edit_args(None, "sneaker", "sandal", ["ngdm"], example="../../x.png")
    )
    assert event == "error"  # not one of the bundled examples
    still_serving(client)
