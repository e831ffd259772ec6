"""FlowEdit (Kulikov et al., ICCV 2025) on the tiny SD3 and FLUX pipelines: nidiff's
:func:`~nidiff.editing.flowedit.flowedit` equals a transcription of the authors' loop written
directly on diffusers' transformer, scheduler timesteps and prompt encoders (their batching of
``[source uncond, source, target uncond, target]`` for SD3, FLUX's guidance embedding), for the
same noise; the same prompt and guidance on both sides give the source back exactly; other
processes are refused."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

import tiny_families

from nidiff.editing.flowedit import flowedit
from nidiff.models.flux import Flux, pack, unpack
from nidiff.models.sd3 import StableDiffusion3

SRC, TAR = "a photo of a cat", "a photo of a dog"
SIZE = 32


@pytest.fixture(scope="module")
def sd3():
    p = tiny_families.build_sd3()
    nets = (p.transformer, p.vae, p.text_encoder, p.text_encoder_2, p.tokenizer, p.tokenizer_2)
    space = StableDiffusion3(*nets, p.scheduler, p.text_encoder_3, p.tokenizer_3)
    return p, space


@pytest.fixture(scope="module")
def flux():
    p = tiny_families.build_flux()
    space = Flux(p.transformer, p.vae, p.text_encoder, p.text_encoder_2, p.tokenizer,
                 p.tokenizer_2, p.scheduler)  # fmt: skip
    return p, space


@torch.no_grad()
def reference_sd3(pipe, x_src, steps, n_max, src_g, tar_g, seed):
    """The authors' FlowEditSD3 loop (n_avg = 1, n_min = 0) on diffusers' pieces."""
    pe_s, ne_s, pp_s, npp_s = pipe.encode_prompt(SRC, None, None, device="cpu")
    pe_t, ne_t, pp_t, npp_t = pipe.encode_prompt(TAR, None, None, device="cpu")
    pipe.scheduler.set_timesteps(steps)
    timesteps, gen, z = pipe.scheduler.timesteps, torch.Generator().manual_seed(seed), x_src
    for i, t in enumerate(timesteps):
        if steps - i > n_max:
            continue
        t_i = t / 1000
        t_im1 = timesteps[i + 1] / 1000 if i + 1 < len(timesteps) else torch.zeros_like(t_i)
        noise = torch.randn(x_src.shape, generator=gen)
        zt_src = (1 - t_i) * x_src + t_i * noise
        zt_tar = z + zt_src - x_src
        v = pipe.transformer(
            hidden_states=torch.cat([zt_src, zt_src, zt_tar, zt_tar]), timestep=t.expand(4),
            encoder_hidden_states=torch.cat([ne_s, pe_s, ne_t, pe_t]),
            pooled_projections=torch.cat([npp_s, pp_s, npp_t, pp_t]), return_dict=False,
        )[0]  # fmt: skip
        su, sc, tu, tc = v.chunk(4)
        v_delta = (tu + tar_g * (tc - tu)) - (su + src_g * (sc - su))
        z = z + (t_im1 - t_i) * v_delta
    return z


@torch.no_grad()
def reference_flux(pipe, space, x_src, steps, n_max, src_g, tar_g, seed):
    """The authors' FlowEditFLUX loop (n_avg = 1, n_min = 0): the two guidances embedded."""
    from diffusers import FluxPipeline

    pe_s, pp_s, txt = pipe.encode_prompt(SRC, device="cpu")
    pe_t, pp_t, _ = pipe.encode_prompt(TAR, device="cpu")
    h = x_src.shape[-1]
    img_ids = FluxPipeline._prepare_latent_image_ids(1, h // 2, h // 2, "cpu", torch.float32)
    grid = space.grid(steps, size=SIZE)  # FluxPipeline's sigmas (tested in test_family_crosscheck)
    sigmas = torch.cat([grid.t, grid.t_prev[-1:]]).float()
    gen, z = torch.Generator().manual_seed(seed), pack(x_src)
    x = pack(x_src)
    for i in range(steps - n_max, steps):
        t_i, t_im1 = sigmas[i], sigmas[i + 1]
        noise = pack(torch.randn(x_src.shape, generator=gen))
        zt_src = (1 - t_i) * x + t_i * noise
        zt_tar = z + zt_src - x

        def v(lat, states, pooled, g, t_i=t_i):
            return pipe.transformer(
                hidden_states=lat, timestep=(t_i * 1000).expand(1) / 1000,
                guidance=torch.full([1], g), pooled_projections=pooled,
                encoder_hidden_states=states, txt_ids=txt, img_ids=img_ids, return_dict=False,
            )[0]  # fmt: skip

        z = z + (t_im1 - t_i) * (v(zt_tar, pe_t, pp_t, tar_g) - v(zt_src, pe_s, pp_s, src_g))
    return unpack(z, h, h)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def test_flowedit_on_sd3_is_the_authors_loop(sd3):
    pipe, space = sd3
    x_src = torch.randn(space.latent_shape(1, SIZE), generator=torch.Generator().manual_seed(4))
    steps, n_max = 10, 7
    ref = reference_sd3(pipe, x_src, steps, n_max, 3.5, 13.5, seed=9)
    src, tar = space.condition([SRC, TAR])
    with torch.no_grad():
        res = flowedit(
            space.denoiser, x_src, space.process, space.grid(steps, size=SIZE), source_cond=src,
            target_cond=tar, source_guidance=3.5, guidance=13.5, null_cond=space.null_cond(),
            skip=steps - n_max, generator=torch.Generator().manual_seed(9),
        )  # fmt: skip
    err = rel(res.x0, ref)
    print(f"sd3: FlowEdit vs the authors' loop, relative difference {err:.1e}")
    assert err <= 1e-5 and rel(res.x0, x_src) > 1e-3
    assert res.info["n_max"] == n_max and res.nfe == 2 * n_max


def test_flowedit_on_flux_is_the_authors_loop(flux):
    pipe, space = flux
    x_src = torch.randn(space.latent_shape(1, SIZE), generator=torch.Generator().manual_seed(4))
    steps, n_max = 8, 6
    ref = reference_flux(pipe, space, x_src, steps, n_max, 1.5, 5.5, seed=2)
    src, tar = space.condition([SRC, TAR])
    with torch.no_grad():
        res = flowedit(
            space.denoiser, x_src, space.process, space.grid(steps, size=SIZE), source_cond=src,
            target_cond=tar, source_guidance=1.5, guidance=5.5, null_cond=space.null_cond(),
            skip=steps - n_max, generator=torch.Generator().manual_seed(2),
        )  # fmt: skip
    err = rel(res.x0, ref)
    print(f"flux: FlowEdit vs the authors' loop, relative difference {err:.1e}")
    assert err <= 1e-5 and rel(res.x0, x_src) > 1e-3


def test_the_same_prompt_and_guidance_give_the_source_back(sd3):
    _, space = sd3
    x_src = torch.randn(space.latent_shape(1, SIZE), generator=torch.Generator().manual_seed(1))
    (c,) = space.condition([SRC])
    with torch.no_grad():
        res = flowedit(
            space.denoiser, x_src, space.process, space.grid(6, size=SIZE), source_cond=c,
            target_cond=c, source_guidance=4.0, guidance=4.0, null_cond=space.null_cond(),
            n_avg=2, generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
    assert torch.equal(res.x0, x_src)


def test_flowedit_refuses_what_it_cannot_run(sd3):
    from nidiff.bundled import load_bundled
    from nidiff.schedule import leading_grid

    m = load_bundled()
    x = torch.zeros(1, 1, 28, 28)
    with pytest.raises(ValueError, match="rectified-flow velocity field"):
        flowedit(m.denoiser, x, m.process, leading_grid(m.process.schedule, 4),
                 source_cond=torch.tensor([1]), target_cond=torch.tensor([2]))  # fmt: skip
    _, space = sd3
    x = torch.zeros(space.latent_shape(1, SIZE))
    grid = space.grid(4, size=SIZE)
    with pytest.raises(ValueError, match="skip=4"):
        flowedit(space.denoiser, x, space.process, grid, source_cond=None, target_cond=None,
                 skip=4)  # fmt: skip
    with pytest.raises(ValueError, match="n_avg=0"):
        flowedit(space.denoiser, x, space.process, grid, source_cond=None, target_cond=None,
                 n_avg=0)  # fmt: skip
