"""NeMo: the Tekken tokenizer, the exact V3-Tekken prompt, native function calling, checkpoint reading."""
