"""nemo-chat: a local, private chat app for Mistral NeMo 12B on llama.cpp."""

__version__ = "0.1.0"
