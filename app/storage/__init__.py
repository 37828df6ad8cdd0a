"""Storage: the SQLite database (one guarded connection, named migrations) and the document store."""
