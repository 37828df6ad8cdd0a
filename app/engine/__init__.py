"""Engines: GGUF reading, the GPU plan, the model catalog and downloads, prompt formats."""
