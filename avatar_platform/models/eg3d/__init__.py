"""The EG3D tri-plane generator in plain PyTorch (no custom CUDA ops): runs on CPU and GPU."""
