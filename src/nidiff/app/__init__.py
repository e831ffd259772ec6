"""``nidiff app``: an image-editing studio in the browser, on any model the CLI loads.

Every method of the CLI on one input side by side, with NGDM's change map shown and paintable,
the edit-friendly inversion computed once per input and reused by every edit, a seed gallery
and the inversion's shift/flip/colour manipulations; downloads in the CLI's formats.

Modules, one concept each: :mod:`~nidiff.app.limits` (what a client may send),
:mod:`~nidiff.app.fields` (the parameters, from ``nidiff edit``'s options),
:mod:`~nidiff.app.session` (the per-user inversion cache), :mod:`~nidiff.app.methods` (the
adapter to the CLI's method table), :mod:`~nidiff.app.inputs` and :mod:`~nidiff.app.images`
(reading a request, pictures and maps), :mod:`~nidiff.app.studio` and
:mod:`~nidiff.app.manipulate` (the actions, without gradio), :mod:`~nidiff.app.record` (the
downloads), :mod:`~nidiff.app.layout` (the gradio page) and :mod:`~nidiff.app.server`
(launching it offline). Only the last two import gradio (``pip install 'nidiff[app]'``).
"""
