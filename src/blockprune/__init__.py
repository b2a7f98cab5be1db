"""blockprune."""
