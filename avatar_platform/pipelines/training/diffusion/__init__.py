"""The style-space latent diffusion's training: config → trainer (one step over ws the GAN
samples) → loop (a Ray Train worker) → job (`run_train_diffusion`, what `train diffusion` calls)."""
