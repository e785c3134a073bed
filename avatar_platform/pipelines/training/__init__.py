"""Training on Ray Train: `ray_job.py` (what every job shares: the run folder, MLflow, the step
driver, checkpoints, fit), `fid_tracker.py`, and one subpackage per model, each read in the same
order (config → data → trainer → loop → job): `gan/` (the tri-plane GAN), `diffusion/` (the
style diffusion), `lora/` (a character's LoRA)."""
