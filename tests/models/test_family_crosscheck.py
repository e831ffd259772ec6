"""nidiff's SDXL, SD3 and FLUX adapters against diffusers' own pipelines, on the tiny random
pipelines of ``tests/support/tiny_families.py``: the same prompts give the same embeddings, the
same steps the same grid, and with the same latents, noise, steps and strength nidiff's
text-to-image sampling, SDEdit and NGDM (λ ≡ 1) land on the pipelines' latents (before
decoding: ``output_type="latent"``). The largest differences are printed (``pytest -s``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

import tiny_families

from nidiff.editing import ngdm, sdedit
from nidiff.models.contract import with_guidance
from nidiff.models.flux import Flux, pack, unpack
from nidiff.models.sd3 import StableDiffusion3
from nidiff.models.sdxl import StableDiffusionXL
from nidiff.samplers import sample

PROMPT, OTHER = "a photo of a cat", "a watercolour of a dog"
SIZE = 32  # 16² latents with the tiny VAEs (factor 2)
RTOL = 1e-5  # float32 chains; measured 0 to 1e-6
#: nidiff's sampler equal to each pipeline's scheduler (SDXL's Euler is DDIM(0) in σ).
SAMPLER = {"sdxl": "ddim", "sd3": "flow-euler", "sd3-no-t5": "flow-euler", "flux": "flow-euler"}
GUIDANCE = {"sdxl": 5.0, "sd3": 7.0, "sd3-no-t5": 7.0, "flux": 3.5}

_BUILT: dict[str, tuple] = {}


def adapter(family: str, pipe, **options):
    if family == "sdxl":
        p = pipe
        return StableDiffusionXL(p.unet, p.vae, p.text_encoder, p.text_encoder_2, p.tokenizer,
                                 p.tokenizer_2, p.scheduler, **options)  # fmt: skip
    if family.startswith("sd3"):
        p = pipe
        return StableDiffusion3(p.transformer, p.vae, p.text_encoder, p.text_encoder_2,
                                p.tokenizer, p.tokenizer_2, p.scheduler, p.text_encoder_3,
                                p.tokenizer_3, **options)  # fmt: skip
    p = pipe
    return Flux(p.transformer, p.vae, p.text_encoder, p.text_encoder_2, p.tokenizer,
                p.tokenizer_2, p.scheduler, **options)  # fmt: skip


def built(family: str):
    """``(pipeline, nidiff adapter)`` sharing the same networks (built once per module)."""
    if family not in _BUILT:
        if family == "sd3-no-t5":
            pipe = tiny_families.build_sd3(t5=False)
        else:
            pipe = tiny_families.BUILDERS[family]()
        pipe.set_progress_bar_config(disable=True)
        _BUILT[family] = (pipe, adapter(family, pipe))
    return _BUILT[family]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def latents_of(family: str, space, images: torch.Tensor) -> torch.Tensor:
    """The pipelines' latent output as nidiff's space (FLUX: unpacked)."""
    if family == "flux":
        h = SIZE // space.vae_scale_factor
        return unpack(images, h, h)
    return images


def reference_prompts(family: str, pipe, prompts: list[str]):
    """The pipeline's own (conditional, unconditional) embeddings as nidiff's condition dicts."""
    with torch.no_grad():
        if family == "sdxl":
            pe, ne, pp, npp = pipe.encode_prompt(prompts, device="cpu")
            return (
                {"encoder_hidden_states": pe, "text_embeds": pp},
                {"encoder_hidden_states": ne, "text_embeds": npp},
            )
        if family.startswith("sd3"):
            pe, ne, pp, npp = pipe.encode_prompt(prompts, None, None, device="cpu")
            return (
                {"encoder_hidden_states": pe, "pooled_projections": pp},
                {"encoder_hidden_states": ne, "pooled_projections": npp},
            )
        pe, pp, _ = pipe.encode_prompt(prompts, device="cpu")
        ne, npp, _ = pipe.encode_prompt([""] * len(prompts), device="cpu")
        return (
            {"encoder_hidden_states": pe, "pooled_projections": pp},
            {"encoder_hidden_states": ne, "pooled_projections": npp},
        )


@pytest.mark.parametrize("family", ["sdxl", "sd3", "sd3-no-t5", "flux"])
def test_prompt_conditions_are_the_pipelines(family):
    pipe, space = built(family)
    cond, null = reference_prompts(family, pipe, [PROMPT, OTHER])
    ours = space.encode_prompt([PROMPT, OTHER])
    mine_null = space.null_cond()
    assert ours.keys() == cond.keys() == mine_null.keys()
    worst = 0.0
    for key in cond:
        assert ours[key].shape == cond[key].shape
        worst = max(worst, float((ours[key] - cond[key]).abs().max()))
        worst = max(worst, float((mine_null[key] - null[key][:1]).abs().max()))
    print(f"{family}: prompt embeddings, largest difference {worst:.1e}")
    assert worst <= 1e-5
    if family == "sdxl":  # force_zeros_for_empty_prompt: the unconditional embeddings are zeros
        assert all(float(v.abs().max()) == 0 for v in mine_null.values())
    if family == "sd3-no-t5":  # T5's part of the sequence is zeros
        assert float(ours["encoder_hidden_states"][:, 77:].abs().max()) == 0


@pytest.mark.parametrize("steps", [4, 10, 28])
@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_the_grid_is_the_pipelines(family, steps):
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

    pipe, space = built(family)
    grid = space.grid(steps, size=SIZE)
    sched = pipe.scheduler
    if family == "sdxl":  # paper time = diffusers timestep + 1
        sched.set_timesteps(steps)
        assert (grid.t - 1).tolist() == sched.timesteps.double().tolist()
        return
    if family == "sd3":
        sched.set_timesteps(steps)
    else:  # what FluxPipeline asks: custom sigmas and the token count's mu
        tokens = (SIZE // space.vae_scale_factor // 2) ** 2
        mu = calculate_shift(tokens, 256, 4096, 0.5, 1.15)
        sigmas = np.linspace(1.0, 1 / steps, steps)
        retrieve_timesteps(sched, steps, "cpu", sigmas=sigmas, mu=mu)
    diffusers_sigmas = sched.sigmas.double()
    err = float((grid.times - diffusers_sigmas).abs().max())
    print(f"{family}, {steps} steps: grid vs scheduler sigmas {err:.1e}")
    assert err <= 1e-7  # diffusers keeps its sigmas in float32
    assert torch.equal(grid.t.float(), sched.sigmas[:-1])


def t2i(family: str, space, seed: int, steps: int, guidance: float, **kw):
    """nidiff's text-to-image latents for one seed (the pipelines' noise: one randn draw)."""
    z = torch.randn(space.latent_shape(1, SIZE), generator=torch.Generator().manual_seed(seed))
    (cond,) = space.condition([PROMPT])
    rule = space.process.sampler(SAMPLER[family])
    model = with_guidance(space.denoiser, guidance, space.null_cond())
    with torch.no_grad():
        return sample(model, space.process.prior(z), space.grid(steps, size=SIZE), rule,
                      cond=cond).x0  # fmt: skip


@pytest.mark.parametrize("family", ["sdxl", "sd3", "sd3-no-t5", "flux"])
def test_text_to_image_is_the_pipelines_output(family):
    pipe, space = built(family)
    steps, g = 6, GUIDANCE[family]
    out = pipe(PROMPT, height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=g,
               generator=torch.Generator().manual_seed(3), output_type="latent").images  # fmt: skip
    ref = latents_of(family, space, out)
    ours = t2i(family, space, 3, steps, g)
    err = rel(ours, ref)
    print(f"{family}: text-to-image vs {type(pipe).__name__}, relative difference {err:.1e}")
    assert err <= RTOL


def test_flux_true_cfg_with_a_negative_prompt_is_the_pipelines():
    """Guidance-distilled FLUX with true classifier-free guidance on top (two passes, the
    negative prompt's condition as the unconditional one)."""
    pipe, base = built("flux")
    space = Flux(pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2,
                 pipe.tokenizer, pipe.tokenizer_2, pipe.scheduler, true_cfg=2.5,
                 negative_prompt="blurry")  # fmt: skip
    out = pipe(PROMPT, negative_prompt="blurry", true_cfg_scale=2.5, height=SIZE, width=SIZE,
               num_inference_steps=5, guidance_scale=4.0,
               generator=torch.Generator().manual_seed(1), output_type="latent").images  # fmt: skip
    ours = t2i("flux", space, 1, 5, 4.0)
    err = rel(ours, latents_of("flux", space, out))
    print(f"flux: true CFG 2.5 + guidance 4 vs FluxPipeline, relative difference {err:.1e}")
    assert err <= RTOL
    assert rel(t2i("flux", base, 1, 5, 4.0), ours) > 1e-3  # true CFG changed the sample


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_a_negative_prompt_is_the_pipelines(family):
    """Classifier-free guidance away from a negative prompt (its condition as the unconditional
    one; SDXL then no longer zeroes it) is the pipeline's ``negative_prompt``."""
    pipe, base = built(family)
    space = adapter(family, pipe, negative_prompt="blurry")
    steps, g = 5, GUIDANCE[family]
    out = pipe(PROMPT, negative_prompt="blurry", height=SIZE, width=SIZE,
               num_inference_steps=steps, guidance_scale=g,
               generator=torch.Generator().manual_seed(2), output_type="latent").images  # fmt: skip
    ours = t2i(family, space, 2, steps, g)
    err = rel(ours, latents_of(family, space, out))
    print(f"{family}: negative prompt vs {type(pipe).__name__}, relative difference {err:.1e}")
    assert err <= RTOL
    assert rel(t2i(family, base, 2, steps, g), ours) > 1e-3  # the negative prompt mattered


IMG2IMG = {
    "sdxl": "StableDiffusionXLImg2ImgPipeline",
    "sd3": "StableDiffusion3Img2ImgPipeline",
    "flux": "FluxImg2ImgPipeline",
}


def img2img(family: str, pipe, x0: torch.Tensor, strength: float, steps: int, seed: int):
    import diffusers

    i2i = getattr(diffusers, IMG2IMG[family]).from_pipe(pipe)
    i2i.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(seed)
    out = i2i(PROMPT, image=x0, height=SIZE, width=SIZE, strength=strength,
              num_inference_steps=steps, guidance_scale=GUIDANCE[family], generator=g,
              output_type="latent")  # fmt: skip
    return out.images


@pytest.mark.parametrize("strength", [0.3, 0.6, 1.0])
@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_sdedit_is_img2img_and_ngdm_with_lambda_one_is_img2img_at_full_strength(family, strength):
    """Same latents (passed as the image), noise (the generator's first draw), steps and
    strength. diffusers' strength counts steps (start at step ``N - int(N·s)``), nidiff's is a
    noise level (the first grid time ``<= s·t_max``): the test gives nidiff the start time of
    diffusers' step."""
    pipe, space = built(family)
    steps, seed = 10, 7
    x0 = torch.randn(space.latent_shape(1, SIZE), generator=torch.Generator().manual_seed(11))
    ref = latents_of(family, space, img2img(family, pipe, x0, strength, steps, seed))
    grid = space.grid(steps, size=SIZE)
    k = steps - int(steps * strength)
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    (cond,) = space.condition([PROMPT])
    kw = {"cond": cond, "guidance": GUIDANCE[family], "null_cond": space.null_cond(), "z": z,
          "rule": space.process.sampler(SAMPLER[family])}  # fmt: skip
    level = float(grid.t[k]) / space.process.schedule.t_max
    with torch.no_grad():
        res = sdedit(space.denoiser, x0, space.process, grid, strength=level, **kw)
    assert res.info["start_index"] == k
    err = rel(res.x0, ref)
    print(f"{family}: SDEdit vs {IMG2IMG[family]} at strength {strength}: {err:.1e}")
    assert err <= RTOL
    if strength == 1.0:  # NGDM, λ ≡ 1: every pixel starts at grid.t[0], as img2img at 1
        lam = torch.ones(1, 1, *x0.shape[2:])
        with torch.no_grad():
            res = ngdm(space.denoiser, x0, space.process, grid, lam, **kw)
        err = rel(res.x0, ref)
        print(f"{family}: NGDM λ≡1 vs {IMG2IMG[family]} at strength 1: {err:.1e}")
        assert err <= RTOL


def test_flux_packing_is_the_pipelines():
    from diffusers import FluxPipeline

    x = torch.randn(2, 16, 6, 10)
    packed = FluxPipeline._pack_latents(x, 2, 16, 6, 10)
    assert torch.equal(pack(x), packed)
    assert torch.equal(unpack(packed, 6, 10), x)
    ids = FluxPipeline._prepare_latent_image_ids(2, 3, 5, "cpu", torch.float32)
    from nidiff.models.flux import image_ids

    assert torch.equal(image_ids(6, 10, torch.device("cpu"), torch.float32), ids)
