"""Using a trained run of either twin: read its directory (run_dir), load it as a `logits_fn`
(classifier), evaluate on the test set or predict images (evaluation).
"""
