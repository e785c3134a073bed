"""Data generation: image backends and the Ray Data job (spec → condition renders → images → Parquet)."""
