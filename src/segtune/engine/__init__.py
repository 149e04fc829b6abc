"""One run: network, loss, steps, schedules, the training loop and its validation pass."""
