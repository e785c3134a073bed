"""The files between stages, in one place: what a model folder holds (`model_folder`).

Stages, the registry, serving and the starters read and write these through here, not through
each other. (The dataset and LoRA formats still live with their stages: docs/architecture.md.)
"""
