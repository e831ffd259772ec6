"""The studio in a real headless Chromium: the page ``nidiff app`` serves, used as a person uses it.

One browser session uploads a file that is not an image (one sentence in the page), then a
bundled example, edits it with NGDM, EF, NGDM+EF and SDEdit at
once, and checks what comes back against the input and the change map; edits again with EF and
another skip and checks from the page's network-call counter that nothing was re-inverted;
paints and erases the change map with the editor's brush and eraser and checks that NGDM
follows the painted map. No request leaves localhost (no CDN, no analytics).

With ``NIDIFF_SCREENSHOT=docs/images/studio.png`` the run also saves the screenshot the README
shows (only then: a normal run rewrites no tracked file).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image
from studio_server import CHROMIUM_ARGS, EXAMPLES, STEPS

EXAMPLE = EXAMPLES / "sneaker-0.png"
SKIP_AGAIN = 5  # the second EF edit's skip
TIMEOUT = 120_000  # ms: one edit takes seconds; a busy shared machine gets room


def grey(data: bytes) -> np.ndarray:
    """A downloaded PNG as floats in [-1, 1] (the model's range)."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L"), dtype=np.float64) / 127.5 - 1


def wait_done(page, previous: str) -> str:
    """Wait until the status line reports a new finished edit (or an error); return it."""
    try:
        page.wait_for_function(
            """prev => { const s = document.querySelector('#status').innerText;
                         return s !== prev && (s.startsWith('Done') || s.includes('Error')); }""",
            arg=previous,
            timeout=TIMEOUT,
        )
    except Exception as err:
        raise AssertionError(f"no result; the status says {page.inner_text('#status')!r}") from err
    status = page.inner_text("#status")
    assert status.startswith("Done"), status
    return status


def downloads(page) -> dict[str, bytes]:
    """Every file in the Downloads box, by name, fetched from the server like a click would."""
    out = {}
    for href in page.eval_on_selector_all("#downloads a", "els => els.map(e => e.href)"):
        name = href.rsplit("/", 1)[1]
        response = page.request.get(href)
        assert response.ok, href
        out[name] = response.body()
    return out


def calls(page) -> dict[str, int]:
    text = page.inner_text("#counter")
    found = re.search(r"this request (\d+) · this session (\d+) · inversions made this session "
                      r"(\d+)", text)  # fmt: skip
    assert found, text
    return dict(zip(("request", "session", "inversions"), map(int, found.groups()), strict=True))


def set_number(page, field: str, value: int) -> None:
    box = page.locator(f"#f-{field} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def wait_value(page, field: str, value: int) -> None:
    """Wait until the page shows ``value`` in a number field (a server update landed)."""
    selector = f"#f-{field} input[type=number]"
    try:
        page.wait_for_function("([s, v]) => document.querySelector(s).value === v",
                               arg=[selector, str(value)], timeout=TIMEOUT)  # fmt: skip
    except Exception as err:
        shown = page.locator(selector).input_value()
        raise AssertionError(f"{field} shows {shown!r}, not {value}") from err


def tick(page, labels: dict[str, bool]) -> None:
    for label, on in labels.items():
        box = page.locator("#methods").get_by_role("checkbox", name=label, exact=True)
        if box.is_checked() != on:
            box.click()


def painted_cells(page) -> int:
    """The cells with λ ≥ 0.5 in the map the server last saw (the note under the editor)."""
    found = re.search(r"λ ≥ 0.5 on (\d+) of", page.inner_text("#map-note"))
    return int(found.group(1)) if found else -1


def stroke(page, tool: str, row: int, grid: int) -> None:
    """Drag the editor's brush or eraser along one row of the model's grid, and wait until the
    server has seen the new map (its note counts more cells for the brush, fewer for the
    eraser)."""
    before = painted_cells(page)
    page.click(f"#map button[aria-label='{tool}']")
    page.locator("#map").evaluate("e => e.scrollIntoView({block: 'center'})")  # all in view
    box = page.locator("#map canvas").first.bounding_box()
    zoom = float(page.inner_text("#map .zoom-number").strip().rstrip("%")) / 100
    side = 280 * zoom  # the 28×28 image is shown at 280×280, zoomed to fit
    left = box["x"] + (box["width"] - side) / 2
    top = box["y"] + (box["height"] - side) / 2
    cell = side / grid
    y = top + (row + 0.5) * cell
    page.mouse.move(left + 1.5 * cell, y)
    page.mouse.down()
    for col in (7, 13, 19, grid - 2.5):  # a few points: the brush draws the segments between
        page.mouse.move(left + col * cell, y)
    page.mouse.up()
    more = tool == "Brush"
    deadline = time.monotonic() + TIMEOUT / 1000
    while (painted_cells(page) > before) != more or painted_cells(page) < 0:
        assert time.monotonic() < deadline, f"the {tool} stroke never reached the server"
        page.wait_for_timeout(200)


def test_studio_in_chromium(studio, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    x0 = grey(EXAMPLE.read_bytes())
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1050},
        )  # fmt: skip
        page = browser.new_page()
        outside = []
        page.on(
            "request", lambda r: outside.append(r.url) if not _local(r.url, studio.url) else None
        )
        page.goto(studio.url)

        # a file that is not an image: one sentence in the page, no traceback
        fake = tmp_path / "notes.png"
        fake.write_text("not a picture")
        page.set_input_files("#image input[type=file]", str(fake))
        page.wait_for_function("document.querySelector('#status').innerText.includes('Error')",
                               timeout=TIMEOUT)  # fmt: skip
        message = page.inner_text("#status")
        assert "not a readable image" in message and "Traceback" not in message, message

        # upload, source and target, few steps, the four default methods
        page.set_input_files("#image input[type=file]", str(EXAMPLE))
        page.wait_for_function("document.querySelector('#status').innerText.includes('Loaded')",
                               timeout=TIMEOUT)  # fmt: skip
        for role, name in (("source", "Sneaker"), ("target", "Sandal")):
            box = page.locator(f"#{role} input")
            box.fill(name)
            box.press("Enter")
        # the skips follow the steps: EF's default keeps its fraction of them
        ef_default = int(page.locator("#f-ef_skip input[type=number]").input_value())
        steps_default = int(page.locator("#f-steps input[type=number]").input_value())
        set_number(page, "steps", STEPS)
        wait_value(page, "ef_skip", round(ef_default * STEPS / steps_default))
        set_number(page, "ef_skip", 3)
        tick(page, {"NGDM": True, "EF": True, "NGDM+EF": True, "SDEdit": True})
        page.click("#run")
        status = wait_done(page, "")
        first = calls(page)
        files = downloads(page)
        page.wait_for_timeout(1000)  # the editor draws the computed map
        if os.environ.get("NIDIFF_SCREENSHOT"):  # the README's picture (docs/images/studio.png)
            shot = Path(os.environ["NIDIFF_SCREENSHOT"])
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.evaluate("window.scrollTo(0, 0)")
            bottom = page.locator("#results").bounding_box()
            clip = {"x": 0, "y": 0, "width": 1400, "height": bottom["y"] + bottom["height"] + 16}
            page.screenshot(path=shot, full_page=True, clip=clip)

        # the results differ from the input where λ is high and not where it is low
        lam = (grey(files["sneaker-0-map.png"]) + 1) / 2
        high, low = lam > 0.5, lam < 0.05
        assert high.sum() >= 20 and low.sum() >= 200
        for name in ("sneaker-0-ngdm-1.png", "sneaker-0-ef-2.png"):
            change = np.abs(grey(files[name]) - x0)
            assert change[high].mean() > 0.3, name
            assert change[low].mean() < 0.1, name
            assert change[high].mean() > 5 * change[low].mean(), name
        ngdm_first = grey(files["sneaker-0-ngdm-1.png"])

        # the reconstruction error shown is ~0; the inversion was made once for EF and NGDM+EF
        error = float(re.search(r"max\|x̂₀ − x₀\| = (\S+?)\.$", status).group(1))
        assert error < 1e-4, status
        assert "inversion computed" in status and first["inversions"] == 1
        ef_record = json.loads(files["sneaker-0-ef-2.png.json"])
        assert ef_record["inversion"]["reused"] is False
        assert ef_record["network_calls"]["edit"] == 2 * STEPS + (STEPS - 3)
        ngdm_ef_record = json.loads(files["sneaker-0-ngdm-ef-3.png.json"])
        assert ngdm_ef_record["inversion"]["reused"] is True

        # a second EF edit with another skip does not re-invert
        tick(page, {"NGDM": False, "EF": True, "NGDM+EF": False, "SDEdit": False})
        set_number(page, "ef_skip", SKIP_AGAIN)
        page.click("#run")
        status = wait_done(page, status)
        again = calls(page)
        assert again["request"] == STEPS - SKIP_AGAIN  # the regeneration alone
        assert again["inversions"] == 1 and again["session"] == first["session"] + again["request"]
        assert "inversion reused" in status

        # paint λ = 1 on a row of the object NGDM kept, erase the row it changed most
        content = (x0 > -0.5).mean(axis=1)
        rows = lam.mean(axis=1)
        erase = int(rows.argmax())
        brush = max((r for r in range(2, 26) if abs(r - erase) >= 3 and rows[r] < 0.2),
                    key=lambda r: content[r])  # fmt: skip
        assert content[brush] > 0.3
        stroke(page, "Brush", brush, 28)
        stroke(page, "Erase", erase, 28)
        tick(page, {"NGDM": True, "EF": False})
        page.click("#run")
        wait_done(page, status)
        files = downloads(page)
        painted = (grey(files["sneaker-0-map.png"]) + 1) / 2
        assert painted[brush, 3:25].min() > 0.9, painted.mean(axis=1).round(2)
        assert painted[erase, 3:25].max() < 0.05, painted.mean(axis=1).round(2)
        record = json.loads(files["sneaker-0-ngdm-1.png.json"])
        strength = float(page.locator("#f-strength input[type=number]").input_value())
        assert record["map"] == "painted"  # no weighting map: only the steps from NGDM's start
        assert record["network_calls"]["edit"] == round(strength * STEPS), strength
        ngdm = grey(files["sneaker-0-ngdm-1.png"])
        assert np.abs(ngdm - ngdm_first)[brush, 3:25].mean() > 0.1  # it follows the brush ...
        assert np.abs(ngdm - x0)[erase, 3:25].max() < 0.02  # ... and keeps what was erased
        assert np.abs(ngdm_first - x0)[erase, 3:25].mean() > 0.2
        browser.close()
    assert outside == [], "the page reached beyond the studio"


def _local(url: str, base: str) -> bool:
    return url.startswith((base, "data:", "blob:"))
