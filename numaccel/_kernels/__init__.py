"""Jitted kernels only: no validation, no exceptions, no imports from the layers above."""
