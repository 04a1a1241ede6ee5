"""What a study shows on the terminal and hears from it: progress lines, quieted tools, stop signals."""
