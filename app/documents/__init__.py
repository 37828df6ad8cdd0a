"""Documents: reading files into Markdown and chunks, Markdown segments, language detection."""
