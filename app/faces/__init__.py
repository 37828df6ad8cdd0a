"""Faces: the command line and the Gradio tabs; thin, they parse, wire and show."""
