"""The files between stages, in one place: the model folder and how a `--model` is found
(`model_folder`), MLflow addressing (`model_uri`), the dataset's rows (`dataset_schema`) and
card (`dataset_card`), the LoRA folder (`lora_folder`), a user's picture (`pictures`) and an
avatar request (`avatar_spec`). Stages, the registry, serving and the starters read and write
these through here, not through each other.
"""
