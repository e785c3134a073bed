"""The files between stages, in one place: the model folder and how a `--model` is found
(`model_folder`), MLflow addressing (`model_uri`), the dataset card (`dataset_card`), the LoRA
folder (`lora_folder`) and a user's picture (`pictures`). Stages, the registry, serving and the
starters read and write these through here, not through each other. (The dataset's Parquet schema
still lives with its stage, `pipelines/datagen/stages.py`: docs/architecture.md.)
"""
