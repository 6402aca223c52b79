"""Training: targets in the input pipeline, the detector trainer, schedules, callbacks, fit."""
