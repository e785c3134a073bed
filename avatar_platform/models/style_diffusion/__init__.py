"""Diffusion in the generator's style space (docs/method.md §4): image → embedding → w.

An image encoder (CLIP or a small CNN) embeds a frontal picture; a transformer denoiser, trained
with diffusers' DDPM schedule, turns noise into the generator's w, with classifier-free guidance.
"""
