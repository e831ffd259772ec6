r"""What the rectified-flow families share (SD3/3.5 and FLUX): the process, the scheduler's grid,
the text encoders and the transformer as a nidiff model.

**Process.** ``Process(RectifiedFlow(), prediction=FlowVelocity())``: :math:`x_t = (1-t)\,x_0 +
t\,\varepsilon` with **nidiff time = diffusers' sigma** (``t = 1`` pure noise, SNR 0), and the
networks predict the velocity :math:`\varepsilon - x_0`. The transformers take
``timestep = sigma × num_train_timesteps`` (SD3) or ``sigma`` itself (FLUX, which multiplies by
1000 inside); :class:`TransformerDenoiser` converts.

**Grid.** The shift of ``FlowMatchEulerDiscreteScheduler`` maps the grid, not the schedule
(:mod:`nidiff.schedule.flow`): static ``shift`` or, with ``use_dynamic_shifting``, the
resolution-dependent :math:`\mu` of the number of image tokens (:func:`nidiff.schedule.flux_mu`),
so a grid may depend on the image size. Scheduler options nidiff's grids do not reproduce
(Karras/exponential/beta sigmas, ``shift_terminal``, inverted sigmas, linear time shift,
stochastic sampling) are refused when the pipeline is loaded.

**Text.** CLIP encoders as the pipelines call them and the T5 encoder padded to
``max_sequence_length`` (SD3: 256, FLUX: 512), each prompt truncated with a warning.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .contract import time_per_sample
from .latent import LatentPipeline, tokenize

__all__ = ["FlowPipeline", "TransformerDenoiser", "check_flow_scheduler"]

#: Scheduler options whose sigmas nidiff's flow grids do not reproduce, with the value they need.
_UNSUPPORTED = {
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "shift_terminal": None,
    "invert_sigmas": False,
    "stochastic_sampling": False,
}


def check_flow_scheduler(scheduler: Any) -> None:
    """Raise ``ValueError`` for a flow scheduler whose grid nidiff does not reproduce."""
    cfg = scheduler.config
    for key, ok in _UNSUPPORTED.items():
        value = getattr(cfg, key, ok)
        if value not in (ok, None, False, 0):
            raise ValueError(
                f"the scheduler's {key}={value!r} is not supported (nidiff's flow grid is "
                "linspace sigmas with a static or dynamic shift)"
            )
    kind = getattr(cfg, "time_shift_type", "exponential") or "exponential"
    if kind != "exponential":
        raise ValueError(f"the scheduler's time_shift_type={kind!r} is not supported")


class TransformerDenoiser(nn.Module):
    """A flow transformer as a nidiff model: ``out = model(x_t, t, cond)`` is the velocity
    ``(B, C, h, w)`` in ``x_t``'s dtype and device; ``t`` is diffusers' sigma, one per sample.

    ``cond`` is ``{"encoder_hidden_states": (B, L, D), "pooled_projections": (B, P)}``;
    subclasses call the network (:meth:`_velocity`). Inputs are moved to ``device`` (the
    execution device: with offload the network is moved there when it is called) and cast to the
    network's dtype.
    """

    prediction = "flow"

    def __init__(self, transformer: nn.Module, device: torch.device, train_steps: int):
        super().__init__()
        self.transformer = transformer
        self.device = torch.device(device)
        self.train_steps = int(train_steps)

    def _inputs(self, x_t: Tensor, t: Tensor | float, cond: Any) -> tuple[Tensor, ...]:
        """``(x, sigma (B,) float32, encoder states, pooled)`` on the device in its dtype."""
        if not isinstance(cond, dict) or not {"encoder_hidden_states", "pooled_projections"} <= set(
            cond
        ):
            raise ValueError(
                "cond must be {'encoder_hidden_states': (B, L, D), 'pooled_projections': (B, P)}"
                " (the adapter's encode_prompt)"
            )
        B, dtype = x_t.shape[0], self.transformer.dtype
        states, pooled = cond["encoder_hidden_states"], cond["pooled_projections"]
        if states.ndim != 3 or states.shape[0] != B or pooled.shape[0] != B:
            raise ValueError(
                f"cond of batch {states.shape[0]} ({tuple(states.shape)}) does not fit x_t of "
                f"batch {B}"
            )
        sigma = time_per_sample(torch.as_tensor(t), x_t).to(device=self.device, dtype=torch.float32)
        x = x_t.to(device=self.device, dtype=dtype)
        return x, sigma, states.to(self.device, dtype), pooled.to(self.device, dtype)

    def forward(self, x_t: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        return self._velocity(x_t, t, cond).to(device=x_t.device, dtype=x_t.dtype)

    def _velocity(self, x_t: Tensor, t: Tensor | float, cond: Any) -> Tensor:
        raise NotImplementedError


class FlowPipeline(LatentPipeline):
    """The shared part of :class:`~nidiff.models.sd3.StableDiffusion3` and
    :class:`~nidiff.models.flux.Flux` (module docstring)."""

    def _init_flow(self, transformer: nn.Module, scheduler: Any) -> None:
        from ..process import Process
        from ..schedule import RectifiedFlow
        from .prediction import FlowVelocity

        check_flow_scheduler(scheduler)
        self.transformer = self._network(transformer)
        self.scheduler = scheduler
        self.train_steps = int(getattr(scheduler.config, "num_train_timesteps", 1000) or 1000)
        self.process = Process(RectifiedFlow(), prediction=FlowVelocity())

    def _scheduler_mu(self, image_seq_len: int, max_shift: float) -> float | None:
        """The dynamic shift :math:`\\mu` for ``image_seq_len`` tokens (``None`` when the
        scheduler shifts statically), with the scheduler's own line."""
        from ..schedule import flux_mu

        cfg = self.scheduler.config
        if not getattr(cfg, "use_dynamic_shifting", False):
            return None
        return flux_mu(
            image_seq_len,
            int(getattr(cfg, "base_image_seq_len", 256) or 256),
            int(getattr(cfg, "max_image_seq_len", 4096) or 4096),
            float(getattr(cfg, "base_shift", 0.5) or 0.5),
            float(getattr(cfg, "max_shift", max_shift) or max_shift),
        )

    @property
    def shift(self) -> float:
        """The scheduler's static shift (SD3: 3.0)."""
        return float(getattr(self.scheduler.config, "shift", 1.0) or 1.0)

    def _clip(self, tokenizer: Any, encoder: nn.Module, prompts: list[str], name: str) -> Any:
        """The CLIP encoder's output for ``prompts`` padded to its context (hidden states kept)."""
        ids = tokenize(tokenizer, prompts, int(tokenizer.model_max_length), name).input_ids
        self.offload.use(encoder)
        with torch.no_grad():
            return encoder(ids.to(self.device), output_hidden_states=True)

    def _t5(
        self, tokenizer: Any, encoder: nn.Module | None, prompts: list[str], width: int
    ) -> Tensor:
        """T5's last hidden state ``(B, max_sequence_length, D)``; zeros of ``width`` channels
        without a T5 encoder (as the SD3 pipeline does)."""
        L = self.max_sequence_length
        if encoder is None:
            return torch.zeros(len(prompts), L, width, device=self.device)
        ids = tokenize(tokenizer, prompts, L, "the T5 encoder").input_ids
        self.offload.use(encoder)
        with torch.no_grad():
            return encoder(ids.to(self.device))[0].float()
