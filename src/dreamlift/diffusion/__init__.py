"""The DDPM core: schedules, forward process, posterior, prediction targets,
Algorithm 1 (training), Algorithm 2 (ancestral sampling), DDIM and classifier-free
guidance. Usable on its own: ``from dreamlift.diffusion import NoiseSchedule, q_sample``.

See docs/DIFFUSION.md for each equation and the function that implements it.
"""

from .guidance import ConditionalModel, Denoiser, cfg_combine, guided_denoiser
from .loss import diffusion_loss, drop_condition
from .process import (
    posterior_mean,
    posterior_mean_coefs,
    posterior_terms,
    posterior_variance,
    q_mean_variance,
    q_sample,
    q_step,
)
from .sampling import StepOutput, ddim_step, ddpm_step, sample, timesteps
from .schedule import NoiseSchedule, cosine_betas, gather, linear_betas
from .targets import PREDICTIONS, Prediction, convert, from_x0_eps, to_x0_eps

__all__ = [
    "NoiseSchedule", "linear_betas", "cosine_betas", "gather",
    "q_step", "q_sample", "q_mean_variance",
    "posterior_mean", "posterior_mean_coefs", "posterior_terms", "posterior_variance",
    "Prediction", "PREDICTIONS", "to_x0_eps", "from_x0_eps", "convert",
    "diffusion_loss", "drop_condition",
    "cfg_combine", "guided_denoiser", "ConditionalModel", "Denoiser",
    "StepOutput", "ddpm_step", "ddim_step", "timesteps", "sample",
]
