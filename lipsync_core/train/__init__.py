"""Dataset preparation, training loops and evaluation."""
