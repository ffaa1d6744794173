"""Small helpers shared by several layers; they import nothing else of bulkwatch."""
