"""dreamlift: text-to-3D by Score Distillation Sampling on a from-first-principles DDPM core.

Importing ``dreamlift`` is cheap; the sub-packages (``dreamlift.diffusion``, ...) import
torch when they are used.
"""

__version__ = "0.1.0"
