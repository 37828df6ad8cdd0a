"""Services: chat, summarize and translate as plain functions and jobs; one place builds them."""
