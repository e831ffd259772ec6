"""diffusers' DDIM with ``set_alpha_to_one=False`` ends on ᾱ of the first training step; nidiff's
grids end on clean data unless asked (``StableDiffusion.pipeline_grid``), which then reproduces
the pipeline's output exactly (same latents, same prompt, DDIM η = 0)."""

from __future__ import annotations

import torch

from nidiff.models.stable_diffusion import StableDiffusion
from nidiff.samplers import sample


def test_pipeline_grid_reproduces_the_ddim_pipeline(tmp_path):
    import tiny_sd

    pipe = tiny_sd.build_tiny_pipeline(tmp_path)
    sd = StableDiffusion(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler)
    assert pipe.scheduler.config.set_alpha_to_one is False
    x_T = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    prompt, steps, w = "a photo of a cat", 6, 7.5
    with torch.no_grad():
        want = pipe(prompt, latents=x_T.clone(), num_inference_steps=steps, guidance_scale=w,
                    eta=0.0, output_type="latent").images  # fmt: skip
        cond = sd.encode_prompt([prompt])
        rule = sd.process.rule(0.0)
        got = sample(sd.guided(w), x_T, sd.pipeline_grid(steps), rule, cond=cond).x0
        clean = sample(sd.guided(w), x_T, sd.grid(steps), rule, cond=cond).x0
    err = float((got - want).abs().max() / want.abs().max())
    print(f"nidiff DDIM on the pipeline grid vs diffusers' pipeline: {err:.2e}")
    assert err < 1e-5
    assert (
        float(sd.pipeline_grid(steps).t_prev[-1]) == 1.0 and float(sd.grid(steps).t_prev[-1]) == 0
    )
    assert float((clean - want).abs().max()) > 1e3 * float((got - want).abs().max())
