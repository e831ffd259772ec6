"""The studio's page: the controls of :mod:`nidiff.app.controls` wired to the actions of
:class:`~nidiff.app.studio.Studio`.

Layout: the input (upload or bundled example, source and target, methods) beside the change
map (the editor: the image with λ as a red layer to paint and erase); the status line and the
network-call counter; three tabs of results (methods side by side, a seed gallery, the
inversion's manipulations); the downloads; the parameters. Every handler returns only what it
changes and, for any error, only the status line: one sentence, never a traceback.

API: the actions are also gradio endpoints (``/edit``, ``/seeds``, ``/manipulate``,
``/weighting``) taking the components named in :data:`INPUTS`, then the fields in
:data:`~nidiff.app.fields.FROM_CLI` order (``gradio_client``'s ``view_api`` lists them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from . import controls
from .fields import FROM_CLI
from .images import editor_value, enlarge, view_scale
from .inputs import Inputs
from .manipulate import manipulate
from .studio import Outcome, Studio

__all__ = ["CSS", "INPUTS", "build", "counter_text"]

#: Each endpoint's leading inputs (the fields follow, in ``FROM_CLI`` order).
INPUTS: dict[str, tuple[str, ...]] = {
    "edit": ("image", "example", "source", "target", "editor", "methods"),
    "seeds": ("image", "example", "source", "target", "editor", "seed_method", "seed_count"),
    "manipulate": (
        "image", "example", "source", "target", "editor", "dx", "dy", "fill", "flip",
        "color_on", "color", "color_strength", "into",
    ),
    "weighting": ("image", "example", "source", "target"),
}  # fmt: skip
#: Sharp enlarged pixels.
CSS = "#results img, #seed-results img, #manip-results img { image-rendering: pixelated; }"
INTRO = (
    "## nidiff studio\nUpload an image or pick an example, choose source and target, tick "
    "methods and **Edit**. The red layer is NGDM's change map λ: paint to change more, erase "
    "to keep. The edit-friendly inversion is computed once per input and reused by every edit."
)


def counter_text(out: Outcome) -> str:
    """The network-call counter the page shows after an action."""
    return (
        f"Network calls: this request **{out.calls}** · this session {out.session_calls} · "
        f"inversions made this session {out.inversions_made}"
    )


def build(studio: Studio) -> gr.Blocks:
    """The page of ``studio``'s model (class dropdowns or prompt boxes)."""
    c: dict[str, Any] = {}  # component name → component
    with gr.Blocks(
        title="nidiff studio", analytics_enabled=False, delete_cache=(900, 3600)
    ) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                run = controls.input_column(studio, c)
            with gr.Column(scale=3, min_width=320):
                compute, clear, map_file = controls.map_column(studio, c)
        status = gr.Markdown(elem_id="status")
        counter = gr.Markdown(elem_id="counter")
        with gr.Tabs():
            with gr.Tab("Methods side by side"):
                results = controls.gallery("results")
            with gr.Tab("Seed gallery"):
                controls.seed_controls(studio, c)
                seed_run = gr.Button("Run seeds", elem_id="seed-run")
                seed_results = controls.gallery("seed-results")
            with gr.Tab("EF manipulations"):
                controls.manipulation_controls(studio, c)
                manip_run = gr.Button("Regenerate", elem_id="manip-run")
                manip_results = controls.gallery("manip-results")
        downloads = gr.File(
            label="Downloads", file_count="multiple", interactive=False, height=160,
            elem_id="downloads",
        )  # fmt: skip
        with gr.Accordion("Parameters (the papers' defaults)", open=True):
            c |= controls.parameters(studio)
            controls.steps_events(c)
        shown = {"status": status, "counter": counter, "downloads": downloads}
        actions = {
            "edit": (run, results, lambda s, i, h, f, pr: studio.edit(s, i, h["methods"], f, pr)),
            "seeds": (seed_run, seed_results, lambda s, i, h, f, pr: studio.seeds(
                s, i, h["seed_method"], h["seed_count"], f, pr)),
            "manipulate": (manip_run, manip_results, lambda s, i, h, f, pr: manipulate(
                studio, s, i, f, controls.manipulation_of(h), pr)),
            "weighting": (compute, None, lambda s, i, h, f, pr: studio.weighting(s, i, f)),
        }  # fmt: skip
        for kind, (button, gallery, act) in actions.items():
            outs = {**shown, "gallery": gallery, "editor": c["editor"]}
            outs = {k: v for k, v in outs.items() if v is not None}
            inputs = [c[n] for n in (*INPUTS[kind], *FROM_CLI)]
            fn = _handler(studio, kind, act, outs)
            # progress over the results only: the editor stays usable (and an editor left
            # unchanged by an action would keep a stale progress overlay over the canvas)
            progress_on = gallery if gallery is not None else shown["status"]
            button.click(
                fn, inputs, list(outs.values()), api_name=kind, show_progress_on=progress_on
            )
        controls.input_events(studio, c, status, map_file, clear)

        def forget(request: gr.Request) -> None:  # the page was closed: drop its cache
            studio.store.drop(_session(request))

        demo.unload(forget)
    return demo


def _session(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or "anonymous"


def _handler(studio: Studio, kind: str, act: Callable[..., Outcome], outs: dict[str, Any]):
    """The gradio function of an action: unpacks the inputs, runs ``act``, and returns the
    components it changes (only the status line on an error)."""
    n = len(INPUTS[kind])

    def fn(request: gr.Request, progress=gr.Progress(), *values):  # noqa: B008 (gradio's way)
        head = dict(zip(INPUTS[kind], values[:n], strict=True))
        params = dict(zip(FROM_CLI, values[n:], strict=True))
        inp = Inputs(*(head.get(k) for k in ("image", "example", "source", "target", "editor")))
        try:
            out = act(_session(request), inp, head, params, lambda f, d: progress(f, desc=d))
        except Exception as err:
            return {outs["status"]: controls.error(err, studio)}
        return _shown(studio, out, outs)

    return fn


def _shown(studio: Studio, out: Outcome, outs: dict[str, Any]) -> dict[Any, Any]:
    """An outcome as the values of the components it changes: the status line, the counter,
    the downloads, the gallery (the input first) and the computed map in the editor."""
    shown: dict[Any, Any] = {
        outs["status"]: out.message,
        outs["counter"]: counter_text(out),
        outs["downloads"]: [str(p) for p in out.files],
    }
    scale = view_scale(studio.m.size)
    if "gallery" in outs:
        images = [(out.view, "input")] if out.view is not None else []
        shown[outs["gallery"]] = images + [
            (enlarge(r.image, scale), r.caption) for r in out.results
        ]
    if out.view is not None and out.lam is not None and not out.painted:
        shown[outs["editor"]] = editor_value(out.view, out.lam)  # show the computed map
    return shown
