"""Augmentation of training batches: the flags (config), albumentations on the CPU
(albumentations_cpu) and the same transforms as JAX ops on the device (on_device).
"""
