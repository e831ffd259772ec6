r"""How each row of :data:`nidiff.methods.METHODS` runs and checks its input.

A run is ``run(call: EditCall) -> (EditResult, extra_nfe)`` (``extra_nfe``: the model calls
spent outside the result, e.g. NGDM's weighting map); a check is
``check(space, source, target, options)``, raising ``ValueError`` with one line for the user
before anything runs (batch mode checks every row first). Each run imports its editing function
when called, so importing the registry stays cheap (``tests/test_imports.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .defaults import ZERO_SHOT_DDIM_PAPER, ZERO_SHOT_PAPER

if TYPE_CHECKING:
    from .methods import EditCall, EditOptions


def _snr_start(c: EditCall) -> int:
    """``1`` when the grid starts where the SNR is 0 (rectified flow's ``t = 1``), else ``0``.

    NGDM's power rule maps every λ > 0 at a time of SNR 0 to that time itself
    (``docs/schedules-and-solvers.md``), so NGDM there would start every pixel with λ > 0 from
    pure noise; the NGDM methods start at the next, noisiest time of positive SNR instead."""
    t0 = c.grid.t[0]
    return int(float(c.space.process.schedule.log_snr(t0)) == float("-inf"))


def _ngdm_start(c: EditCall) -> int:
    """Where the NGDM methods' grid starts: the first time <= ``strength``·t_max (as SDEdit; 1:
    the grid's top, the paper's), and never at a time of SNR 0 (:func:`_snr_start`). λ's
    per-pixel start times lie under that time (NGDM eq. 9 with T the grid's first time)."""
    from .editing.sdedit import start_index

    k = start_index(c.grid, c.options.strength, c.space.process.schedule.t_max)
    return max(k, _snr_start(c))


def _tail(inv: Any, k: int) -> Any:
    """The steps ``k ..`` of an in-memory edit-friendly inversion (from its state at
    ``grid.t[k]``, with its history there)."""
    from dataclasses import replace

    if k == 0:
        return inv
    return replace(
        inv, x_T=inv.xs[k], zs=list(inv.zs[k:]), grid=inv.grid[k:], xs=list(inv.xs[k:]),
        states=None if inv.states is None else list(inv.states[k:]),
    )  # fmt: skip


def run_ngdm(c: EditCall) -> tuple[Any, int]:
    from .editing import ngdm

    s, o = c.space, c.options
    lam, nfe = c.lam()
    res = ngdm(
        s.denoiser, c.x0, s.process, c.grid[_ngdm_start(c) :], lam, cond=c.target,
        rule=c.rule(), generator=c.generator, preserve=o.preserve, **c.guide,
    )  # fmt: skip
    return res, nfe


def run_ngdm_ef(c: EditCall) -> tuple[Any, int]:
    from .editing import ngdm_edit_friendly

    s = c.space
    lam, nfe = c.lam()
    inv = c.ef_invert()
    res = ngdm_edit_friendly(
        s.denoiser, _tail(inv, _ngdm_start(c)), s.process, lam, cond=c.target,
        preserve=c.options.preserve, **c.guide,
    )  # fmt: skip
    return res, nfe + len(c.grid)


def run_ef(c: EditCall) -> tuple[Any, int]:
    from .inversion import edit_friendly_regenerate

    s, inv = c.space, c.ef_invert()
    res = edit_friendly_regenerate(
        s.denoiser, inv, s.process, cond=c.target, skip=c.options.skip, **c.guide
    )
    return res, len(c.grid)


def run_cycle(c: EditCall) -> tuple[Any, int]:
    from .inversion import cycle_edit, cycle_invert

    s, o = c.space, c.options
    inv = cycle_invert(
        s.denoiser, c.x0, s.process, c.grid, cond=c.source, eta=o.eta, generator=c.generator,
        **c.src_guide,
    )  # fmt: skip
    res = cycle_edit(s.denoiser, inv, s.process, cond=c.target, skip=o.skip, **c.guide)
    return res, len(c.grid)


def run_ddim(c: EditCall) -> tuple[Any, int]:
    from .inversion import ddim_edit, ddim_invert

    s = c.space
    inv = ddim_invert(s.denoiser, c.x0, s.process, c.grid, cond=c.source, **c.src_guide)
    res = ddim_edit(s.denoiser, inv, s.process, cond=c.target, skip=c.options.skip, **c.guide)
    return res, inv.nfe


def run_sdedit(c: EditCall) -> tuple[Any, int]:
    from .editing import sdedit

    s, o = c.space, c.options
    res = sdedit(
        s.denoiser, c.x0, s.process, c.grid, strength=o.strength, cond=c.target, rule=c.rule(),
        generator=c.generator, **c.guide,
    )  # fmt: skip
    return res, 0


def run_ilvr(c: EditCall) -> tuple[Any, int]:
    from .editing import ilvr

    s, o = c.space, c.options
    res = ilvr(
        s.denoiser, c.x0, s.process, c.grid, factor=o.factor, cond=c.target, rule=c.rule(),
        generator=c.generator, **c.guide,
    )  # fmt: skip
    return res, 0


def run_diffedit(c: EditCall) -> tuple[Any, int]:
    from .editing import diffedit

    s, o = c.space, c.options
    res = diffedit(
        s.denoiser, c.x0, s.process, c.grid, source_cond=c.source, target_cond=c.target,
        strength=o.strength, mask_strength=o.map_strength, mask_n=o.map_n,
        mask_threshold=o.threshold, generator=c.generator, **c.guide,
    )  # fmt: skip
    return res, 0


def run_flowedit(c: EditCall) -> tuple[Any, int]:
    from .editing.flowedit import flowedit

    s, o = c.space, c.options
    res = flowedit(
        s.denoiser, c.x0, s.process, c.grid, source_cond=c.source, target_cond=c.target,
        source_guidance=o.source_guidance, guidance=o.guidance, null_cond=s.null_cond(),
        skip=o.skip, generator=c.generator,
    )  # fmt: skip
    return res, 0


def check_flow(space: Any, source: str, target: str, o: EditOptions) -> None:
    """FlowEdit needs a rectified-flow velocity model (SD3, FLUX)."""
    from .schedule import RectifiedFlow

    if not isinstance(space.process.schedule, RectifiedFlow):
        family = getattr(space, "family", "a pixel model")
        raise ValueError(
            "--method flowedit follows a rectified-flow velocity field: it runs on sd3 and flux "
            f"pipelines, not on {family}"
        )


def run_p2p(c: EditCall) -> tuple[Any, int]:
    from .editing import p2p_edit_friendly

    o = c.options
    source, target = c.prompts
    res = p2p_edit_friendly(
        c.space, c.x0, source, target, grid=c.grid, skip=o.skip,
        source_guidance=o.source_guidance, guidance=o.guidance, eta=o.eta,
        cross_replace=o.cross_replace, self_replace=o.self_replace, mode=o.p2p_mode,
        reweight=dict(o.reweight) or None, generator=c.generator,
    )  # fmt: skip
    return res, 0  # res.nfe already counts the inversion


def check_p2p(space: Any, source: str, target: str, o: EditOptions) -> None:
    """The model must have UNet cross-attention processors (a family with
    ``attention_control``: SD 1.x/2.x, SDXL), the prompts must align in ``p2p_mode`` (on both
    of SDXL's tokenizers) and every re-weighted word be in the target."""
    from .editing import p2p_token_map
    from .models.attention import cross_attention_layers, token_weights

    what = "controls a UNet's cross-attention processors (Prompt-to-Prompt)"
    _attention_family(space, "p2p", what)
    _naming("p2p", cross_attention_layers, space.unet, "Prompt-to-Prompt")
    p2p_token_map(space, source, target, o.p2p_mode)
    if o.reweight:
        token_weights(space.tokenizer, target, dict(o.reweight))


def _naming(method: str, check: Callable[..., Any], *args: Any) -> None:
    """``check(*args)``, its ``ValueError`` re-raised naming ``--method method``."""
    try:
        check(*args)
    except ValueError as err:
        raise ValueError(f"--method {method}: {err}") from None


#: The families Zero-Shot I2I and PnP run on: their layer choices and guidance are SD 1.x/2.x's.
_SD_ONLY = ("sd",)


def _attention_family(
    space: Any, method: str, what: str, only: tuple[str, ...] | None = None
) -> None:
    """The model must be a family whose UNet attention nidiff controls (``attention_control``:
    SD 1.x/2.x and SDXL for Prompt-to-Prompt), or one of ``only`` when given."""
    from .models.families import FAMILIES

    family = FAMILIES.get(getattr(space, "family", "sd"))
    names = [f.name for f in FAMILIES.values() if f.attention_control]
    names = names if only is None else [n for n in names if n in only]
    if family is not None and family.name not in names:
        able = ", ".join(names)
        raise ValueError(
            f"--method {method} {what}: it runs on {able} pipelines, not on {family.name} "
            f"({family.label})"
        )


def check_zero_shot(method: str) -> Callable[[Any, str, str, EditOptions], None]:
    """Zero-Shot needs an SD 1.x/2.x UNet with cross-attention layers."""

    def check(space: Any, source: str, target: str, o: EditOptions) -> None:
        from .models.attention import cross_attention_layers

        what = "guides a UNet's cross-attention maps (Zero-Shot I2I)"
        _attention_family(space, method, what, only=_SD_ONLY)
        _naming(method, cross_attention_layers, space.unet, "Zero-Shot I2I")

    return check


def check_pnp(method: str) -> Callable[[Any, str, str, EditOptions], None]:
    """PnP needs an SD 1.x/2.x UNet with its feature block and decoder self-attention."""

    def check(space: Any, source: str, target: str, o: EditOptions) -> None:
        from .editing.pnp import pnp_layers

        what = "injects a UNet's features and self-attention (PnP)"
        _attention_family(space, method, what, only=_SD_ONLY)
        _naming(method, pnp_layers, space.unet, o.self_replace > 0)

    return check


def _xa(c: EditCall, paper: dict[str, Any]) -> float:
    o = c.options
    return paper["xa_guidance"] if o.xa_guidance is None else float(o.xa_guidance)


def run_zero_shot(c: EditCall) -> tuple[Any, int]:
    """Zero-Shot + EF: the call's edit-friendly inversion (the studio's cached one), then the
    guided regeneration with the direction ``target - source``."""
    from .editing import zero_shot_edit

    res = zero_shot_edit(
        c.space, c.ef_invert(), source_cond=c.source, target_cond=c.target, skip=c.options.skip,
        guidance=c.options.guidance, xa_guidance=_xa(c, ZERO_SHOT_PAPER),
    )  # fmt: skip
    return res, len(c.grid)


def run_zero_shot_ddim(c: EditCall) -> tuple[Any, int]:
    from .editing import zero_shot_edit

    o = c.options
    res = zero_shot_edit(
        c.space, c.x0, source_cond=c.source, target_cond=c.target, inversion="ddim",
        grid=c.grid, skip=o.skip, source_guidance=o.source_guidance, guidance=o.guidance,
        xa_guidance=_xa(c, ZERO_SHOT_DDIM_PAPER), noise_reg_steps=o.noise_reg_steps,
        generator=c.generator,
    )  # fmt: skip
    return res, 0  # res.nfe counts the inversion


def run_pnp(c: EditCall, inversion: str) -> tuple[Any, int]:
    from .editing import pnp_edit

    o = c.options
    step = {"eta": o.eta, "rule": c.rule()} if inversion == "ef" else {}
    res = pnp_edit(
        c.space, c.x0, source_cond=c.source, target_cond=c.target, inversion=inversion,
        grid=c.grid, skip=o.skip, source_guidance=o.source_guidance, guidance=o.guidance,
        feature_replace=o.feature_replace, self_replace=o.self_replace,
        inversion_steps=o.inversion_steps, generator=c.generator, **step,
    )  # fmt: skip
    return res, 0  # res.nfe counts the inversion


def run_strokes(c: EditCall) -> tuple[Any, int]:
    """SDEdit of a stroke painting: the user's (:attr:`EditCall.painting`), or the k-means
    painting of ``x0`` (``clusters`` grey levels after a pre-blur of std ``stroke_blur``,
    k-means++ seeded with the edit generator's seed)."""
    from .editing.strokes import stroke_edit

    s, o = c.space, c.options
    given = c.painting is not None
    res = stroke_edit(
        s.denoiser, c.painting if given else c.x0, s.process, c.grid, strength=o.strength,
        clusters=0 if given else o.clusters, blur=o.stroke_blur,
        painting_seed=c.generator.initial_seed(), cond=c.target, rule=c.rule(),
        generator=c.generator, **c.guide,
    )  # fmt: skip
    return res, 0


def check_pixels(space: Any, source: str, target: str, o: EditOptions) -> None:
    """Stroke paintings are made of, and noised in, a pixel model's own pixels."""
    if getattr(space, "factor", 1) != 1:
        from .models.families import FAMILIES

        family = FAMILIES.get(getattr(space, "family", None))
        what = (f"{family.name} pipelines ({family.label})" if family is not None
                else "a model of VAE latents (nidiff train --vae)")  # fmt: skip
        raise ValueError(
            "--method strokes paints the image's pixels (k-means grey levels or colours) and "
            "noises the painting with the model's pixel-space forward process: it runs on "
            f"nidiff's pixel models (e.g. --model default, fashion-edge), not on {what}"
        )
