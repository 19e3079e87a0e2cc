"""Checkpoints that survive a crash: orbax storage of the JAX trainer (orbax_io), a checksum per
checkpoint (checksums) and `--resume` from the newest intact one (resume), for both twins.
"""
