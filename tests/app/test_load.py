"""Load on a studio server: 8 concurrent ``gradio_client`` clients, each with its own session and
its own edit (image, classes, method, seed), submitted at once.

Every client must get its own result: the PNG it downloads equals what the CLI's
:func:`~nidiff.cli.methods.run_method` computes for *its* request (and differs from every other
client's), so an output crossed between sessions fails. None may fail. The server's peak
resident memory is measured from ``/proc`` and printed, and must stay under a generous bound.
Stopping the server (SIGTERM) exits cleanly and leaves nothing behind: its temporary folder is
removed and its home and working folders stay empty.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from studio_server import EXAMPLES, edit_args, fields, start_server

from nidiff.app.fields import validate
from nidiff.app.methods import edit_options

CLIENTS = 8
#: client → (example, source, target, method, seed): all different.
EDITS = [
    ("sneaker-0.png", "sneaker", "sandal", "ngdm", 0),
    ("sneaker-1.png", "sneaker", "ankle boot", "ef", 1),
    ("shirt-0.png", "shirt", "t-shirt", "sdedit", 2),
    ("shirt-1.png", "shirt", "dress", "ngdm", 3),
    ("pullover-0.png", "pullover", "coat", "ef", 4),
    ("pullover-1.png", "pullover", "shirt", "sdedit", 5),
    ("ankle-boot-0.png", "ankle boot", "sneaker", "ngdm", 6),
    ("ankle-boot-1.png", "ankle boot", "sandal", "ef", 7),
]
#: The server holds torch, gradio and the bundled model (~0.5–0.7 GiB measured); a leak per
#: request or session (8 sessions, each with an inversion cache) would show far above this.
PEAK_BOUND = 2 * 1024**3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("load"))
    yield server
    server.stop()


def expected(example: str, source: str, target: str, method: str, seed: int) -> np.ndarray:
    """The edit as the CLI computes it, quantised like the PNG the studio writes."""
    from nidiff.cli.methods import run_method
    from nidiff.cli.model import load_cli_model
    from nidiff.data.transforms import to_uint8

    m = load_cli_model("default", device="cpu")
    x0 = m.load_image(EXAMPLES / example, True)
    src, tgt = m.conditions(source, target)
    opts = edit_options(method, validate(fields(seed=seed)))
    res, _ = run_method(m, x0, method, src, tgt, seed=seed, **opts)
    return to_uint8(m.to_image(res.x0)[0].clamp(-1, 1)).numpy()[0].astype(int)


def test_eight_concurrent_clients(server, tmp_path):
    from gradio_client import Client, handle_file

    clients = [Client(server.url, verbose=False, download_files=tmp_path / f"c{i}")
               for i in range(CLIENTS)]  # fmt: skip
    before = server.peak_rss()
    start, results, failures = threading.Barrier(CLIENTS), [None] * CLIENTS, []

    def submit(i: int) -> None:
        example, source, target, method, seed = EDITS[i]
        args = edit_args(handle_file(str(EXAMPLES / example)), source, target, [method],
                         seed=seed)  # fmt: skip
        start.wait()
        try:
            results[i] = clients[i].predict(*args, api_name="/edit")
        except Exception as err:  # collected: every failure is reported, not just the first
            failures.append((i, repr(err)))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    peak = server.peak_rss()
    print(f"\nstudio server peak RSS: {before / 2**20:.0f} MiB before the load, "
          f"{peak / 2**20:.0f} MiB after {CLIENTS} concurrent edits")  # fmt: skip
    assert not failures, failures
    assert server.alive()

    wanted = [expected(*e) for e in EDITS]
    for i, (status, counter, files, _gallery, _editor) in enumerate(results):
        assert status.startswith("Done"), (i, status)
        method = EDITS[i][3]
        (png,) = [Path(f) for f in files if Path(f).name.endswith(f"-{method}-1.png")]
        assert png.name.startswith(Path(EDITS[i][0]).stem)
        got = np.asarray(Image.open(png).convert("L"), dtype=int)
        assert np.abs(got - wanted[i]).max() <= 1, f"client {i} got another result"
        others = [j for j in range(CLIENTS) if j != i]
        assert all(np.abs(got - wanted[j]).max() > 8 for j in others), i
        assert "this session" in counter
    assert peak < PEAK_BOUND, f"peak RSS {peak / 2**20:.0f} MiB"


def test_stops_cleanly_leaving_nothing_behind(server):
    folder = server.app_folder()
    assert folder.is_dir()
    assert server.stop() == 0
    assert not folder.exists(), "the studio's temporary folder outlived it"
    assert list(server.home.iterdir()) == [] and list(server.cwd.iterdir()) == []
    assert list(server.tmp.iterdir()) == []
