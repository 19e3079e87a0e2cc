"""Proof that the Flax and PyTorch twins are the same model: conversion, checks, benchmark."""

from parity.convert import flax_to_torch, load_weights, save_weights, torch_to_flax

__all__ = ["flax_to_torch", "load_weights", "save_weights", "torch_to_flax"]
