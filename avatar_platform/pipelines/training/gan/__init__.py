"""The tri-plane GAN's training: config → data (the dataset's shards as batches) → losses,
augment and init (the math, ADA, --init) → trainer (one step) → loop (a Ray Train worker) →
job (`run_train_gan`, what `train gan` calls)."""
