"""Training, shared by both twins where it can be: the flags (config, cli), the LR schedules and
Adam (schedules, optim), the jitted JAX step (step, engine), the epoch loop (loop), run artefacts
(report) and the library call `train_and_evaluate` (trainer); the LR range test (lr_range).
"""
