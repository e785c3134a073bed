"""Ray Train loops: the tri-plane GAN (and later the style diffusion and LoRA)."""
