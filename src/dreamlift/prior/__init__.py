"""The built-in text-to-image prior: text encoder, denoiser, training and sampling."""
