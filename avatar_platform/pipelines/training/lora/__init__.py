"""A character's LoRA: a peft LoRA of Stable Diffusion's UNet from a folder of its pictures.
config → data (the pictures, checked) → trainer → loop (a Ray Train worker) → job
(`run_train_lora`, what `train lora` calls)."""
