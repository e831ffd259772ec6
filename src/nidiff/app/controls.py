"""The page's controls, one builder per group: the input column, the change-map editor, the
parameters (from :func:`~nidiff.app.fields.fields`, the CLI's options), the seed gallery's and
the manipulations' controls, and the events that load an input or a map.

Builders put their components into ``c`` (component name → component), the names that
:data:`~nidiff.app.layout.INPUTS` lists.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from .fields import SKIP_FIELDS, fields, follow_steps, used_by
from .images import editor_value, grid_shape, view_scale
from .inputs import EXAMPLES, Inputs, example_class, painted, read_map
from .manipulate import Manipulation
from .methods import label, stochastic
from .studio import Studio, message_of

__all__ = [
    "SHOWN",
    "gallery",
    "input_column",
    "input_events",
    "manipulation_controls",
    "manipulation_of",
    "map_column",
    "parameters",
    "seed_controls",
    "steps_events",
]

#: Methods ticked when the page opens.
SHOWN = ("ngdm", "ef", "ngdm-ef", "sdedit")


def error(err: BaseException, studio: Studio) -> str:
    """The status line of an error: one sentence."""
    return f"**Error:** {message_of(err, studio.root)}"


def input_column(studio: Studio, c: dict[str, Any]) -> Any:
    """Upload / example, source and target (class dropdowns or prompt boxes), the methods;
    returns the Edit button."""
    c["image"] = gr.File(label="Image", file_types=["image"], height=90, elem_id="image")
    c["example"] = gr.Dropdown(
        list(EXAMPLES), value=None, label="or a bundled example", elem_id="example"
    )
    with gr.Row():
        for role in ("source", "target"):
            if studio.classes is None:
                c[role] = gr.Textbox(label=f"{role.capitalize()} prompt", elem_id=role)
            else:
                c[role] = gr.Dropdown(
                    studio.classes, value=None, allow_custom_value=True, elem_id=role,
                    label=f"{role.capitalize()} class (name or id)",
                )  # fmt: skip
    c["methods"] = gr.CheckboxGroup(
        [(label(n), n) for n in studio.methods],
        value=[n for n in SHOWN if n in studio.methods],
        label="Methods",
        elem_id="methods",
    )
    return gr.Button("Edit", variant="primary", elem_id="run")


def map_column(studio: Studio, c: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The change-map editor (the image, λ as a red layer; brush λ = 1, eraser λ = 0) and its
    buttons; returns (compute, clear, map upload)."""
    side = studio.m.size * view_scale(studio.m.size)
    block = side // grid_shape(studio.m)[0]  # screen pixels per grid cell
    c["editor"] = gr.ImageEditor(
        label="Change map λ (red: change; brush λ = 1, eraser λ = 0)",
        type="numpy", image_mode="RGBA", format="png", sources=[], layers=False, transforms=(),
        brush=gr.Brush(colors=["#ff2020"], color_mode="fixed", default_size=2 * block),
        eraser=gr.Eraser(default_size=2 * block), canvas_size=(side, side), elem_id="map",
    )  # fmt: skip
    c["map_note"] = gr.Markdown(elem_id="map-note")
    with gr.Row():
        compute = gr.Button("Compute map", elem_id="compute")
        clear = gr.Button("Clear map", elem_id="clear")
        map_file = gr.UploadButton(
            "Upload a map (PNG)", file_types=[".png"], elem_id="map-file"
        )  # the --save-map convention: grey, the model's grid, white = change
    return compute, clear, map_file


def gallery(elem_id: str) -> Any:
    return gr.Gallery(
        label="Results", columns=6, format="png", object_fit="contain", height=250,
        elem_id=elem_id,
    )  # fmt: skip


def seed_controls(studio: Studio, c: dict[str, Any]) -> None:
    seeded = [(label(n), n) for n in studio.methods if stochastic(n)]
    with gr.Row():
        c["seed_method"] = gr.Dropdown(
            seeded, value=seeded[0][1], label="Method", elem_id="seed-method"
        )
        c["seed_count"] = gr.Slider(
            1, studio.limits.max_seeds, value=4, step=1, label="seeds", elem_id="seed-count"
        )


def manipulation_controls(studio: Studio, c: dict[str, Any]) -> None:
    side = grid_shape(studio.m)[0]
    with gr.Row():
        for name, what in (("dx", "shift right (dx)"), ("dy", "shift down (dy)")):
            c[name] = gr.Slider(1 - side, side - 1, value=0, step=1, label=what, elem_id=name)
        c["fill"] = gr.Radio(["wrap", "band"], value="wrap", label="uncovered band", elem_id="fill")
        c["flip"] = gr.Checkbox(value=False, label="flip horizontally", elem_id="flip")
    with gr.Row():
        c["color_on"] = gr.Checkbox(
            value=False, label="colour edit (in the change map)", elem_id="color-on"
        )
        c["color"] = gr.ColorPicker(value="#ffffff", label="colour", elem_id="color")
        c["color_strength"] = gr.Slider(
            0, 1, value=0.05, step=0.01, label="colour strength s", elem_id="color-strength"
        )
        c["into"] = gr.Radio(
            ["source", "target"], value="source", label="regenerate into", elem_id="into"
        )


def manipulation_of(head: dict[str, Any]) -> Manipulation:
    """The :class:`~nidiff.app.manipulate.Manipulation` the controls describe."""
    color = head["color"] if head["color_on"] else None
    return Manipulation(
        head["dx"], head["dy"], head["fill"], head["flip"], color, head["color_strength"],
        head["into"],
    )  # fmt: skip


def parameters(studio: Studio) -> dict[str, Any]:
    """One component per field, with the CLI's range, help and the model's default (P2P's
    only for text models)."""
    out, d = {}, studio.defaults
    with gr.Row(equal_height=False):
        for f in fields(studio.limits):
            shown = used_by(f.name, studio.methods)  # hidden, still sent and checked
            kw = {"label": f.label, "info": f.info, "elem_id": f"f-{f.name}", "visible": shown}
            if f.kind is bool:
                out[f.name] = gr.Checkbox(value=d[f.name], **kw)
            elif f.kind is str:
                kind = gr.Radio if len(f.choices) <= 4 else gr.Dropdown
                out[f.name] = kind(list(f.choices), value=d[f.name], **kw)
            elif f.name == "seed":
                out[f.name] = gr.Number(
                    value=d[f.name], precision=0, minimum=f.lo, maximum=f.hi, **kw
                )
            else:
                step = 1 if f.kind is int else 0.05 if f.hi <= 1 else 0.5
                lo = f.lo + step if f.low_open else f.lo
                hi = min(f.hi, d["steps"] - 1) if f.name in SKIP_FIELDS else f.hi  # steps_events
                out[f.name] = gr.Slider(lo, hi, value=d[f.name], step=step, min_width=180, **kw)
    return out


def input_events(studio: Studio, c: dict[str, Any], status: Any, map_file: Any, clear: Any):
    """Loading an upload or an example (the editor shows it, no map), clearing the map when
    the source or target changes (it was computed for them) or on request, loading a map."""
    editor = c["editor"]

    def load(inp: Inputs) -> tuple[Any, str]:
        try:
            return studio.load(inp)
        except Exception as err:
            return gr.skip(), error(err, studio)

    def upload(image):
        value, note = load(Inputs(image=image))
        failed = note.startswith("**Error")  # a refused upload leaves the box empty again
        return value, None, None if failed else gr.skip(), note

    def example(name):
        value, note = load(Inputs(example=name))
        source = example_class(name) if name and studio.classes is not None else gr.skip()
        return value, None, source, note

    side = studio.m.size * view_scale(studio.m.size)

    def background(value) -> Any:
        """The editor's image as the page showed it; ``ValueError`` for anything else."""
        bg = None if not value else value.get("background")
        if bg is None or tuple(getattr(bg, "shape", ()))[:2] != (side, side):
            raise ValueError("load an image first (the editor holds no image of this model)")
        return bg[..., :3]

    def bare(value):
        try:
            return editor_value(background(value))
        except ValueError:
            return gr.skip()

    def painted_note(value):
        try:
            lam = painted(studio.m, value)
        except Exception as err:
            return error(err, studio)
        if lam is None:
            return "No map: NGDM computes its weighting map."
        h, w = lam.shape[-2:]
        return (
            f"Map: λ ≥ 0.5 on **{int((lam >= 0.5).sum())}** of {h * w} cells, mean "
            f"{float(lam.mean()):.3f}; NGDM and NGDM+EF follow it."
        )

    def upload_map(path, value):
        try:
            lam = read_map(studio.m, path, studio.root, studio.limits)
            return editor_value(background(value), lam), "Loaded the map."
        except Exception as err:
            return gr.skip(), error(err, studio)

    c["image"].upload(
        upload, [c["image"]], [editor, c["example"], c["image"], status], api_name="load"
    )
    c["example"].input(
        example, [c["example"]], [editor, c["image"], c["source"], status], api_name="example"
    )
    for role in ("source", "target"):
        event = c[role].blur if isinstance(c[role], gr.Textbox) else c[role].change
        event(bare, [editor], [editor], api_visibility="private")
    clear.click(bare, [editor], [editor], api_visibility="private")
    editor.input(painted_note, [editor], [c["map_note"]], api_visibility="private",
                 show_progress="hidden", trigger_mode="always_last")  # fmt: skip
    map_file.upload(upload_map, [map_file, editor], [editor, status], api_name="map")


def steps_events(c: dict[str, Any]) -> None:
    """The skip fields follow the steps (:func:`~nidiff.app.fields.follow_steps`): a skip
    chosen for 50 steps keeps its fraction at 10, so the per-method defaults stay valid."""
    last = gr.State(c["steps"].value)  # the steps the skips were chosen for
    skips = [c[name] for name in SKIP_FIELDS]

    def follow(new, old, *values):
        if not new or not old or new == old:
            return gr.skip(), *(gr.skip() for _ in skips)
        moved = follow_steps(dict(zip(SKIP_FIELDS, values, strict=True)), int(old), int(new))
        return new, *(gr.update(value=moved[name], maximum=max(new - 1, 1))
                      for name in SKIP_FIELDS)  # fmt: skip

    c["steps"].change(follow, [c["steps"], last, *skips], [last, *skips],
                      api_visibility="private", show_progress="hidden")  # fmt: skip
