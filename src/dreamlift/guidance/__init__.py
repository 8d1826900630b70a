"""Guidance for score distillation: one backend interface, the SDS algorithm written once,
and the backends (built-in prior; Stable Diffusion and DeepFloyd IF through diffusers),
loaded by name with :func:`load_backend`."""

from .backends import BACKENDS, load_backend
from .base import GuidanceBackend
from .sds import SDSConfig, SDSOutput, sample_timesteps, sds_step, sds_weights, view_prompts

__all__ = ["GuidanceBackend", "SDSConfig", "SDSOutput", "sds_step", "sample_timesteps", "sds_weights", "view_prompts",
           "BACKENDS", "load_backend"]
