"""Cameras, rays and (later) differentiable renderers shared by the world and the 3D representations."""
